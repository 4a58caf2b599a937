"""Build sysfs/procfs trees shaped like real hosts, for the probe's unit tests.

The layouts follow the kernel's: /sys/bus/pci/devices/ADDR and /sys/block/NAME are links into
/sys/devices/pci.../, NVMe namespaces hang below their controller, NICs below their PCI function.
"""

from __future__ import annotations

import os
from pathlib import Path

from ironserve_target.probe import System


class FakeHost:
    def __init__(self, root: Path):
        self.root = root
        self.commands: dict[str, tuple[int, str]] = {}
        self._minor = 0
        self.write("/proc/self/mountinfo", "")
        self.write("/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n")
        self.mkdir("/sys/block")
        self.mkdir("/sys/class/net")
        self.mkdir("/dev/disk/by-id")

    def system(self, commands: dict | None = None) -> System:
        """The probe's reader on this tree, answering commands from ``commands`` (default: the ones recorded here)."""
        return System(str(self.root), self.commands if commands is None else commands)

    def write(self, path: str, content: str | bytes) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)

    def mkdir(self, path: str) -> Path:
        target = self.root / path.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        return target

    def link(self, path: str, target: str) -> None:
        """A relative symlink at ``path`` to ``target`` (both host paths), as the kernel makes them."""
        source = self.root / path.lstrip("/")
        source.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            return  # one HBA serves several disks
        source.symlink_to(os.path.relpath(self.root / target.lstrip("/"), source.parent))

    def pci(self, chain: list[str], vendor: str, device: str, klass: str, numa: int = -1, driver: str = "") -> str:
        """A PCI function below a chain of bridges, e.g. ['0000:00:01.0', '0000:01:00.0']; returns its sysfs dir."""
        path = "/sys/devices/pci0000:00/" + "/".join(chain)
        self.write(path + "/vendor", vendor + "\n")
        self.write(path + "/device", device + "\n")
        self.write(path + "/class", klass + "\n")
        self.write(path + "/numa_node", f"{numa}\n")
        self.link(f"/sys/bus/pci/devices/{chain[-1]}", path)
        if driver:
            self.mkdir(f"/sys/bus/pci/drivers/{driver}")
            self.link(path + "/driver", f"/sys/bus/pci/drivers/{driver}")
        return path

    def _block(self, name: str, path: str, size_bytes: int, rotational: bool) -> None:
        self._minor += 16
        self.write(path + "/size", f"{size_bytes // 512}\n")
        self.write(path + "/queue/rotational", "1\n" if rotational else "0\n")
        self.write(path + "/dev", f"8:{self._minor}\n")
        self.mkdir(path + "/holders")
        self.mkdir(path + "/slaves")
        self.link(f"/sys/block/{name}", path)
        self.link(f"/sys/class/block/{name}", path)

    def nvme(self, index: int, serial: str, size_gb: int, numa: int = 0, model: str = "SAMSUNG MZWLR3T8HBLS") -> str:
        pci = self.pci(["0000:00:03.0", f"0000:{0x10 + index:02x}:00.0"], "0x144d", "0xa824", "0x010802", numa, "nvme")
        controller = f"{pci}/nvme/nvme{index}"
        self.write(controller + "/serial", serial + "\n")
        self.write(controller + "/model", model + "\n")
        self.link(controller + "/device", pci)
        name = f"nvme{index}n1"
        self._block(name, f"{controller}/{name}", size_gb * 1024**3, rotational=False)
        self.link(f"{controller}/{name}/device", controller)
        self.link(f"/dev/disk/by-id/nvme-{model.replace(' ', '_')}_{serial}", f"/dev/{name}")
        self.link(f"/dev/disk/by-id/nvme-eui.{index:016x}", f"/dev/{name}")
        self.write(f"/dev/{name}", "")
        return name

    def sas_disk(self, letter: str, serial: str, size_gb: int, host: int = 0, rotational: bool = True) -> str:
        name = f"sd{letter}"
        pci = self.pci(["0000:00:04.0", "0000:20:00.0"], "0x1000", "0x0097", "0x010700", 0, "mpt3sas")
        target = f"{pci}/host{host}/target{host}:0:{ord(letter) - 97}/{host}:0:{ord(letter) - 97}:0"
        self.write(target + "/model", "ST8000NM0075\n")
        self.write(target + "/vpd_pg80", b"\x00\x80\x00\x08" + serial.encode())
        self._block(name, f"{target}/block/{name}", size_gb * 1024**3, rotational)
        self.link(f"{target}/block/{name}/device", target)
        self.link(f"/dev/disk/by-id/scsi-35000c500{serial.lower()}", f"/dev/{name}")
        self.write(f"/dev/{name}", "")
        return name

    def virtio_root(self, name: str = "vda", mount: str = "/") -> None:
        pci = self.pci(["0000:00:05.0"], "0x1af4", "0x1042", "0x010000", -1, "virtio-pci")
        path = f"{pci}/virtio2/block/{name}"
        self._block(name, path, 20 * 1024**3, rotational=True)
        majmin = (self.root / path.lstrip("/") / "dev").read_text().strip()
        self.mount(majmin, mount)

    def partition(self, disk: str, number: int) -> str:
        disk_dir = os.path.realpath(self.root / "sys/block" / disk)
        part = f"{disk}{number}" if not disk.startswith("nvme") else f"{disk}p{number}"
        path = "/" + os.path.relpath(disk_dir, self.root) + f"/{part}"
        self._minor += 1
        self.write(path + "/dev", f"8:{self._minor}\n")
        self.write(path + "/partition", f"{number}\n")
        self.mkdir(path + "/holders")
        self.link(f"/sys/class/block/{part}", path)
        return part

    def mount(self, majmin: str, point: str) -> None:
        line = f"{20 + self._minor} 1 {majmin} / {point} rw,relatime shared:1 - ext4 /dev/x rw\n"
        mountinfo = self.root / "proc/self/mountinfo"
        mountinfo.write_text(mountinfo.read_text() + line)

    def nic(
        self,
        name: str,
        mac: str,
        chain: list[str],
        driver: str,
        numa: int = 0,
        speed: int = 100000,
        mtu: int = 1500,
        vfs: int | None = None,
    ) -> str:
        pci = self.pci(chain, "0x15b3", "0x101d", "0x020000", numa, driver)
        net = f"{pci}/net/{name}"
        self.write(net + "/address", mac + "\n")
        self.write(net + "/mtu", f"{mtu}\n")
        self.write(net + "/speed", f"{speed}\n")
        self.write(net + "/operstate", "up\n")
        self.link(net + "/device", pci)
        self.link(f"/sys/class/net/{name}", net)
        if vfs is not None:
            self.write(pci + "/sriov_totalvfs", f"{vfs}\n")
        return pci

    def rdma(
        self,
        device: str,
        netdev: str,
        state: str = "4: ACTIVE",
        soft: bool = False,
        gids: tuple = (),
        rate: str = "400 Gb/sec (4X NDR)",
    ) -> None:
        """An RDMA device on ``netdev``; ``gids`` are (index, gid, type) entries of its GID table."""
        base = f"/sys/class/infiniband/{device}"
        self.write(base + "/ports/1/state", state + "\n")
        self.write(base + "/ports/1/rate", rate + "\n")
        self.write(base + "/ports/1/link_layer", "Ethernet\n")
        self.write(base + "/ports/1/gid_attrs/ndevs/0", netdev + "\n")
        self.write(base + "/ports/1/gids/15", "0000:0000:0000:0000:0000:0000:0000:0000\n")
        for index, gid, kind in gids:
            self.write(f"{base}/ports/1/gids/{index}", gid + "\n")
            self.write(f"{base}/ports/1/gid_attrs/types/{index}", kind + "\n")
            self.write(f"{base}/ports/1/gid_attrs/ndevs/{index}", netdev + "\n")
        if soft:
            self.write(base + "/parent", netdev + "\n")

    def blkid(self, name: str, code: int, output: str = "") -> None:
        self.commands[f"blkid -p -o export /dev/{name}"] = (code, output)
