"""Read-only hardware probe: GPUs, disks, NICs and the host, from sysfs, procfs and a few tools.

Runs on the target (stdlib only). Every reader goes through ``System`` so tests can point it at a
recorded tree and recorded command outputs. A missing file or tool never raises: what could not be
determined is reported as None and named in ``unknown``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree

try:  # on the target, through Ansible's module_utils; on the controller, the package itself
    from ansible.module_utils import ironserve_hardware as rules
except ImportError:  # pragma: no cover - unit tests import the package form
    from ironserve import hardware as rules

EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
_SKIP_BLOCK = ("loop", "ram", "zram", "sr", "fd", "md", "dm-", "nbd")


class System:
    """Files under ``root`` and commands, both replaceable for tests."""

    def __init__(self, root: str = "/", commands: dict | None = None):
        self.root = root
        self.commands = commands  # {"tool arg ...": (rc, stdout)} in tests; None runs for real
        self.unknown: list[str] = []

    def path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def read(self, path: str) -> str | None:
        try:
            with open(self.path(path), "rb") as handle:
                return handle.read().decode("utf-8", "replace").strip()
        except OSError:
            return None

    def read_bytes(self, path: str) -> bytes | None:
        try:
            with open(self.path(path), "rb") as handle:
                return handle.read()
        except OSError:
            return None

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(path)))
        except OSError:
            return []

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.path(path))

    def resolve(self, path: str) -> str | None:
        """The real path of ``path`` as seen on the host (without the test root)."""
        full = self.path(path)
        if not os.path.lexists(full):
            return None
        real = os.path.realpath(full)
        root = os.path.realpath(self.root)
        return "/" + os.path.relpath(real, root) if root != "/" else real

    def run(self, argv: list[str]) -> tuple[int, str] | None:
        """(exit code, stdout), or None when the tool is not installed."""
        if self.commands is not None:
            return self.commands.get(" ".join(argv))
        if shutil.which(argv[0]) is None:
            return None
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.returncode, result.stdout

    def note(self, what: str) -> None:
        if what not in self.unknown:
            self.unknown.append(what)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _numa(system: System, device_dir: str) -> int | None:
    node = _int(system.read(device_dir + "/numa_node"))
    return None if node is None or node < 0 else node


def _pci_chain(system: System, address: str) -> list[str]:
    """PCI addresses from the root port down to ``address`` (for PCIe switch affinity)."""
    real = system.resolve(f"/sys/bus/pci/devices/{address}")
    if real is None:
        return []
    return [part for part in real.split("/") if part.count(":") == 2 and "." in part]


# GPUs ----------------------------------------------------------------------------------------------


def _pci_devices(system: System) -> list[dict]:
    devices = []
    for address in system.listdir("/sys/bus/pci/devices"):
        base = f"/sys/bus/pci/devices/{address}"
        vendor, device, klass = (
            system.read(base + "/vendor"),
            system.read(base + "/device"),
            system.read(base + "/class"),
        )
        if vendor and device and klass:
            devices.append(
                {
                    "address": address,
                    "vendor": vendor.lower(),
                    "device": device.lower(),
                    "class": klass.lower()[:6],
                    "numa_node": _numa(system, base),
                }
            )
    return devices


def _nvidia_smi(system: System) -> dict | None:
    result = system.run(["nvidia-smi", "-q", "-x"])
    if result is None:
        return None
    code, out = result
    if code != 0 or "<nvidia_smi_log" not in out:
        system.note("nvidia-smi is installed but failed (driver not loaded?)")
        return None
    # nvidia-smi output carries a DOCTYPE naming a local DTD; drop it rather than resolve anything.
    start = out.index("<nvidia_smi_log")
    root = ElementTree.fromstring(out[start:])  # noqa: S314 - local nvidia-smi output, DOCTYPE cut off

    def text(node, path):
        found = node.find(path)
        value = found.text.strip() if found is not None and found.text else None
        return None if value in (None, "N/A", "Not Supported") else value

    gpus = {}
    for gpu in root.findall("gpu"):
        bus_id = (gpu.get("id") or "").lower()
        address = bus_id[-12:] if len(bus_id) > 12 else bus_id  # 00000000:19:00.0 -> 0000:19:00.0
        memory = text(gpu, "fb_memory_usage/total")
        # With MIG enabled each instance is its own device to CUDA, with its own share of the memory.
        mig_devices = [
            {
                "gpu_instance_id": _int(text(mig, "gpu_instance_id")),
                "compute_instance_id": _int(text(mig, "compute_instance_id")),
                "multiprocessors": _int(text(mig, "device_attributes/shared/multiprocessor_count")),
                "memory_mib": _int((text(mig, "fb_memory_usage/total") or "").split(" ")[0] or None),
            }
            for mig in gpu.findall("mig_devices/mig_device")
        ]
        gpus[address] = {
            "product_name": text(gpu, "product_name"),
            "uuid": text(gpu, "uuid"),
            "serial": text(gpu, "serial"),
            "pci_device_id": text(gpu, "pci/pci_device_id"),
            "mig_mode": text(gpu, "mig_mode/current_mig"),
            "mig_devices": mig_devices,
            "ecc_mode": text(gpu, "ecc_mode/current_ecc"),
            "memory_mib": _int(memory.split()[0]) if memory else None,
            "compute_capability": text(gpu, "compute_cap"),
            "product_architecture": text(gpu, "product_architecture"),
            "persistence_mode": text(gpu, "persistence_mode"),
            # NVLink fabric (HGX boards with NVSwitch, Hopper and newer): In Progress / Completed, and its result.
            "fabric_state": text(gpu, "fabric/state"),
            "fabric_status": text(gpu, "fabric/status"),
        }
    # The XML of the drivers captured so far carries no compute capability; the query form does (510 and newer).
    query = system.run(["nvidia-smi", "--query-gpu=pci.bus_id,compute_cap", "--format=csv,noheader"])
    for line in (query[1] if query and query[0] == 0 else "").splitlines():
        bus_id, _, capability = (part.strip() for part in line.partition(","))
        seen = gpus.get(bus_id.lower()[-12:])
        if seen is not None and not seen["compute_capability"] and capability[:1].isdigit():
            seen["compute_capability"] = capability
    return {"driver_version": text(root, "driver_version"), "cuda_version": text(root, "cuda_version"), "gpus": gpus}


def _module_flavour(system: System) -> str | None:
    """Which NVIDIA kernel module is loaded: /proc/driver/nvidia/version names the open one "Open Kernel Module"."""
    version = system.read("/proc/driver/nvidia/version")
    if not version:
        return None
    return "open" if "Open Kernel Module" in version else "proprietary"


# Where Debian's pci.ids package (pulled in by pciutils) and other distributions keep the PCI ID Repository's list.
PCI_IDS_FILES = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")
# AMD's accelerator classes (display controller, processing accelerator): their unknown devices are still GPUs.
AMD_ACCELERATOR_CLASSES = ("0x0380", "0x1200")


def _pci_ids(system: System) -> str | None:
    return next((text for text in map(system.read, PCI_IDS_FILES) if text), None)


ROCM_SMI = ["rocm-smi", "--showdriverversion", "--showproductname", "--showmeminfo", "vram", "--showbus", "--json"]


def _rocm_smi(system: System, amd_gpus: list[dict]) -> None:
    """rocm-smi's driver version, and each AMD GPU's name and memory matched by PCI address: they win over the
    table's. One call; a missing or failing tool (no amdgpu loaded) is noted, and each GPU it does not list."""
    result = system.run(ROCM_SMI)
    try:
        answer = json.loads(result[1]) if result and result[0] == 0 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        system.note("AMD driver facts (rocm-smi absent or failing)")
        answer = {}
    driver = (answer.get("system") or {}).get("Driver version")
    by_address = {str(c.get("PCI Bus", "")).lower(): c for c in answer.values() if isinstance(c, dict)}
    for gpu in amd_gpus:
        gpu["driver_version"] = driver
        card = by_address.get((gpu.get("pci_address") or "").lower())
        if card is None:
            system.note(f"AMD GPU {gpu.get('pci_address')}: rocm-smi does not list it (memory from the table)")
            continue
        gpu["source"] = "rocm-smi"
        vram = _int(card.get("VRAM Total Memory (B)"))
        if vram:
            gpu["memory_mib"] = vram // (1024 * 1024)
            gpu["memory_gib"] = round(vram / 1024**3, 1)
        if card.get("Card series"):
            gpu["product_name"] = card["Card series"]
            if not gpu["known"]:
                gpu["model"] = card["Card series"]


def probe_gpus(system: System) -> dict:
    devices = _pci_devices(system)
    smi = _nvidia_smi(system)
    gpus = []
    pci_ids: list[str | None] = []  # read once, and only for a device the rules cannot name
    for dev in devices:
        if dev["vendor"] not in (rules.NVIDIA_VENDOR, rules.AMD_VENDOR) or dev["class"] not in rules.GPU_CLASSES:
            continue
        facts = rules.describe_gpu(dev["vendor"], dev["device"])
        if dev["vendor"] == rules.AMD_VENDOR and not facts["known"] and dev["class"] not in AMD_ACCELERATOR_CLASSES:
            continue  # an APU's or a workstation's graphics, not an Instinct accelerator
        if facts["name_source"] is None:
            if not pci_ids:
                pci_ids.append(_pci_ids(system))
            facts = rules.describe_gpu(
                dev["vendor"], dev["device"], rules.pci_ids_name(pci_ids[0], dev["vendor"], dev["device"])
            )
        if not facts["known"]:
            system.note(
                f"GPU {dev['address']}: {facts['model']} ({dev['vendor']}:{dev['device']}) is not in the hardware rules"
            )
        gpu = {
            "pci_address": dev["address"],
            "numa_node": dev["numa_node"],
            "source": "sysfs",
            **facts,
            "uuid": None,
            "mig_mode": None,
            "mig_devices": [],
            "ecc_mode": None,
            "driver_version": None,
            "cuda_version": None,
            "fabric_state": None,
            "fabric_status": None,
        }
        driver = system.resolve(f"/sys/bus/pci/devices/{dev['address']}/driver")
        gpu["kernel_driver"] = os.path.basename(driver) if driver else None
        seen = (smi or {}).get("gpus", {}).get(dev["address"].lower())
        if seen:
            gpu.update(
                source="nvidia-smi",
                uuid=seen["uuid"],
                mig_mode=seen["mig_mode"],
                mig_devices=seen["mig_devices"],
                ecc_mode=seen["ecc_mode"],
                driver_version=smi["driver_version"],
                cuda_version=smi["cuda_version"],
                persistence_mode=seen["persistence_mode"],
                fabric_state=seen["fabric_state"],
                fabric_status=seen["fabric_status"],
            )
            gpu = rules.with_driver_facts(
                gpu, seen["product_name"], seen["memory_mib"], seen["compute_capability"], seen["product_architecture"]
            )
        gpus.append(gpu)
    jetson_model = system.read("/proc/device-tree/model")
    if jetson_model:
        jetson = rules.describe_jetson(jetson_model.rstrip("\x00"))
        if jetson:
            gpus.append({"pci_address": None, "numa_node": None, "source": "device-tree", **jetson})
    nvswitches = [
        {"pci_address": d["address"], "model": rules.NVSWITCH_DEVICES.get(d["device"], f"NVSwitch {d['device']}")}
        for d in devices
        if d["vendor"] == rules.NVIDIA_VENDOR and d["class"] == rules.NVSWITCH_CLASS
    ]
    if any(g["vendor"] == "nvidia" and g["source"] == "sysfs" for g in gpus) and smi is None:
        system.note("NVIDIA driver facts (nvidia-smi absent or failing): MIG, ECC, driver and CUDA versions")
    if any(g["vendor"] == "amd" for g in gpus):
        _rocm_smi(system, [g for g in gpus if g["vendor"] == "amd"])
    return {
        "gpus": gpus,
        "count": len(gpus),
        "models": sorted({g["model"] for g in gpus}),
        "nvswitches": nvswitches,
        "nvswitch": bool(nvswitches),
        "driver_loaded": smi is not None,
        "driver_module_flavour": _module_flavour(system),
        "driver_version": smi["driver_version"] if smi else None,
        "cuda_version": smi["cuda_version"] if smi else None,
    }


# Disks ---------------------------------------------------------------------------------------------


def _mounts(system: System) -> dict[str, list[str]]:
    """Mount points by 'major:minor' from /proc/self/mountinfo."""
    mounts: dict[str, list[str]] = {}
    for line in (system.read("/proc/self/mountinfo") or "").splitlines():
        fields = line.split()
        if len(fields) > 4:
            mounts.setdefault(fields[2], []).append(fields[4])
    return mounts


def _swaps(system: System) -> set[str]:
    lines = (system.read("/proc/swaps") or "").splitlines()[1:]
    return {os.path.basename(line.split()[0]) for line in lines if line.split()}


def _signature(system: System, name: str) -> str | None:
    result = system.run(["blkid", "-p", "-o", "export", f"/dev/{name}"])
    if result is None:
        system.note("filesystem and RAID signatures (blkid absent)")
        return None
    code, out = result
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if code == 0 and values.get("TYPE"):
        return values["TYPE"]
    if code == 0 and values.get("PTTYPE"):
        return f"partition table ({values['PTTYPE']})"
    return None


def _by_id(system: System) -> dict[str, list[str]]:
    links: dict[str, list[str]] = {}
    for link in system.listdir("/dev/disk/by-id"):
        target = system.resolve(f"/dev/disk/by-id/{link}")
        if target:
            links.setdefault(os.path.basename(target), []).append(f"/dev/disk/by-id/{link}")
    return links


def _stable_id(paths: list[str]) -> str | None:
    """Prefer ids that name the device itself (serial or WWN) over ones that name a slot or a driver."""
    for prefix in ("nvme-eui.", "wwn-", "nvme-", "scsi-3", "scsi-SATA", "scsi-0", "ata-", "scsi-", "virtio-"):
        for path in sorted(paths):
            name = os.path.basename(path)
            if name.startswith(prefix) and "-part" not in name:
                return path
    return None


def _serial(system: System, block: str) -> str | None:
    for path in (f"{block}/device/serial", f"{block}/serial"):
        value = system.read(path)
        if value:
            return value
    vpd = system.read_bytes(f"{block}/device/vpd_pg80")
    if vpd and len(vpd) > 4:
        return vpd[4:].decode("ascii", "replace").strip("\x00 ") or None
    return None


def _disk_kind(system: System, name: str, block: str) -> str:
    if name.startswith("nvme"):
        return "nvme"
    if name.startswith("vd"):
        return "virtio"
    real = system.resolve(block) or ""
    if "/ata" in real:
        return "sata"
    if "/host" in real:
        # SAS and parallel SCSI HBAs (mpt3sas, megaraid_sas, virtio-scsi under a lab) all sit under hostN.
        transport = system.read(f"{block}/device/transport") or ""
        return "sata" if "sata" in transport.lower() else "sas"
    return "other"


def _system_disks(system: System, mounts: dict[str, list[str]], parents: dict[str, str]) -> set[str]:
    """Disks that hold /, /boot or /boot/efi (through partitions, RAID and LVM holders)."""
    wanted = {"/", "/boot", "/boot/efi"}
    majmins = {mm for mm, points in mounts.items() if wanted & set(points)}
    found: set[str] = set()
    for block in system.listdir("/sys/class/block"):
        if system.read(f"/sys/class/block/{block}/dev") in majmins:
            found |= _underlying(system, block, parents)
    return found


def _underlying(system: System, name: str, parents: dict[str, str]) -> set[str]:
    """The whole disks below a block device: a partition's disk, the members of an md or dm device."""
    if name in parents:
        return {parents[name]}
    slaves = system.listdir(f"/sys/class/block/{name}/slaves")
    if not slaves:
        return {name}
    found: set[str] = set()
    for slave in slaves:
        found |= _underlying(system, slave, parents)
    return found


def probe_disks(system: System) -> dict:
    mounts, swaps, ids = _mounts(system), _swaps(system), _by_id(system)
    names = [n for n in system.listdir("/sys/block") if not n.startswith(_SKIP_BLOCK)]
    partitions = {n: [p for p in system.listdir(f"/sys/block/{n}") if p.startswith(n)] for n in names}
    parents = {part: disk for disk, parts in partitions.items() for part in parts}
    system_disks = _system_disks(system, mounts, parents)
    disks = []
    for name in names:
        block = f"/sys/block/{name}"
        reasons = []
        if name in system_disks:
            reasons.append("system disk (holds /, /boot or /boot/efi)")
        for dev in [name, *partitions[name]]:
            majmin = system.read(f"/sys/class/block/{dev}/dev")
            for point in mounts.get(majmin or "", []):
                reasons.append(f"/dev/{dev} mounted on {point}")
            if dev in swaps:
                reasons.append(f"/dev/{dev} is active swap")
            holders = system.listdir(f"/sys/class/block/{dev}/holders")
            if holders:
                reasons.append(f"/dev/{dev} is held by {', '.join(holders)}")
        if partitions[name]:
            reasons.append(f"has partitions ({', '.join(partitions[name])})")
        signature = _signature(system, name)
        if signature:
            label = {
                "linux_raid_member": "RAID member signature",
                "LVM2_member": "LVM physical volume signature",
                "swap": "swap signature",
            }.get(signature, f"{signature} signature")
            reasons.append(label)
        sectors = _int(system.read(block + "/size"))
        device = block + "/device"
        numa = _numa(system, device) if system.exists(device + "/numa_node") else _numa(system, device + "/device")
        stable = ids.get(name, [])
        disks.append(
            {
                "name": name,
                "path": f"/dev/{name}",
                "kind": _disk_kind(system, name, block),
                "rotational": system.read(block + "/queue/rotational") == "1",
                "size_bytes": sectors * 512 if sectors is not None else None,
                "model": system.read(device + "/model"),
                "serial": _serial(system, block),
                "by_id": _stable_id(stable),
                "by_id_all": sorted(stable),
                "numa_node": numa,
                "partitions": partitions[name],
                "signature": signature,
                "in_use": bool(reasons),
                "in_use_reasons": reasons,
            }
        )
    return {"disks": disks, "free": [d["name"] for d in disks if not d["in_use"]]}


# NICs ----------------------------------------------------------------------------------------------


def _rate_gbits(rate: str | None) -> float | None:
    """A port's rate from sysfs ("100 Gb/sec (4X EDR)") in Gb/s, or None when it reads otherwise."""
    try:
        return float((rate or "").split()[0]) if (rate or "").split()[1:2] == ["Gb/sec"] else None
    except ValueError:
        return None


def _rdma_devices(system: System) -> list[dict]:
    devices = []
    for ib in system.listdir("/sys/class/infiniband"):
        base = f"/sys/class/infiniband/{ib}"
        for port in system.listdir(base + "/ports"):
            pbase = f"{base}/ports/{port}"
            netdev = system.read(f"{pbase}/gid_attrs/ndevs/0")
            if not netdev:
                nets = system.listdir(base + "/device/net")
                netdev = nets[0] if nets else None
            state = system.read(pbase + "/state") or ""
            gids = []
            for index in range(16):
                gid = system.read(f"{pbase}/gids/{index}")
                if gid and gid.replace("0", "").replace(":", ""):
                    gids.append(
                        {
                            "index": index,
                            "gid": gid,
                            "type": system.read(f"{pbase}/gid_attrs/types/{index}"),
                            "netdev": system.read(f"{pbase}/gid_attrs/ndevs/{index}"),
                        }
                    )
            devices.append(
                {
                    "device": ib,
                    "port": _int(port),
                    "netdev": netdev,
                    "state": state.split(":", 1)[-1].strip() or None,
                    "link_layer": system.read(pbase + "/link_layer"),
                    "rate_gbits": _rate_gbits(system.read(pbase + "/rate")),
                    # soft-RoCE (rdma_rxe) devices name their Ethernet parent in a 'parent' file.
                    "soft_roce": ib.startswith("rxe") or system.exists(base + "/parent"),
                    "gids": gids,
                }
            )
    return devices


def probe_nics(system: System) -> dict:
    rdma = _rdma_devices(system)
    nics = []
    for name in system.listdir("/sys/class/net"):
        base = f"/sys/class/net/{name}"
        if not system.exists(base + "/device"):
            continue  # virtual: loopback, bridges, bonds, VLANs, rxe's own
        device = system.resolve(base + "/device") or ""
        driver = system.resolve(base + "/device/driver")
        speed = _int(system.read(base + "/speed"))
        pci = os.path.basename(device) if device.count(":") >= 2 else None
        if pci and pci.startswith("virtio"):
            pci = None
        if pci is None:
            parent = os.path.basename(os.path.dirname(device))
            pci = parent if parent.count(":") == 2 else None
        nics.append(
            {
                "name": name,
                # A bond member shows the bond's MAC; its own stays in perm_hwaddr.
                "mac": (
                    system.read(base + "/bonding_slave/perm_hwaddr") or system.read(base + "/address") or ""
                ).lower()
                or None,
                "driver": os.path.basename(driver) if driver else None,
                "pci_address": pci,
                "speed_mbps": speed if speed is not None and speed > 0 else None,
                "mtu": _int(system.read(base + "/mtu")),
                "link": system.read(base + "/operstate"),
                "numa_node": _numa(system, base + "/device") if system.exists(base + "/device/numa_node") else None,
                "sriov_total_vfs": _int(system.read(base + "/device/sriov_totalvfs")),
                "rdma": [r for r in rdma if r["netdev"] == name],
            }
        )
    return {"nics": nics, "rdma_devices": rdma}


# Host ----------------------------------------------------------------------------------------------


def _cpu(system: System) -> dict:
    models, sockets, cores, threads = set(), set(), set(), 0
    physical = "0"
    for line in (system.read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            threads += 1
        elif key == "model name":
            models.add(value)
        elif key == "physical id":
            physical = value
            sockets.add(value)
        elif key == "core id":
            cores.add((physical, value))
    return {
        "cpu_model": sorted(models)[0] if models else None,
        "sockets": len(sockets) or (1 if threads else None),
        "cores": len(cores) or threads or None,
        "threads": threads or None,
    }


def _meminfo(system: System) -> dict[str, int]:
    values = {}
    for line in (system.read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            values[key] = _int(parts[0]) or 0
    return values


def _secure_boot(system: System) -> str:
    if not system.exists("/sys/firmware/efi"):
        return "not_efi"
    data = system.read_bytes(f"/sys/firmware/efi/efivars/SecureBoot-{EFI_GLOBAL}")
    if data is None or len(data) < 5:
        system.note("Secure Boot state (efivars unreadable)")
        return "unknown"
    return "enabled" if data[4] == 1 else "disabled"


def _os_release(system: System) -> dict:
    values = {}
    for line in (system.read("/etc/os-release") or "").splitlines():
        key, _, value = line.partition("=")
        values[key] = value.strip().strip('"')
    return {
        "os_id": values.get("ID"),
        "os_version": values.get("VERSION_ID"),
        "os_name": values.get("PRETTY_NAME"),
        "os_codename": values.get("VERSION_CODENAME"),
    }


def probe_host(system: System) -> dict:
    memory = _meminfo(system)
    nodes = [n for n in system.listdir("/sys/devices/system/node") if n.startswith("node") and n[4:].isdigit()]
    iommu = bool(system.listdir("/sys/kernel/iommu_groups"))
    return {
        **_cpu(system),
        "memory_mib": memory["MemTotal"] // 1024 if "MemTotal" in memory else None,
        "numa_nodes": len(nodes) or 1,
        "hugepages_total": memory.get("HugePages_Total"),
        "hugepage_size_kib": memory.get("Hugepagesize"),
        "kernel": system.read("/proc/sys/kernel/osrelease"),
        **_os_release(system),
        "iommu": iommu,
        "secure_boot": _secure_boot(system),
        "virtualised": system.read("/sys/class/dmi/id/sys_vendor") in ("QEMU", "KVM")
        or "hypervisor" in (system.read("/proc/cpuinfo") or ""),
    }


def gpu_nic_affinity(system: System, gpus: list[dict], nics: list[dict]) -> list[dict]:
    """For each GPU and physical NIC: same PCIe switch, same NUMA node, or across NUMA nodes (NCCL's view)."""
    pairs = []
    for gpu in gpus:
        if not gpu.get("pci_address"):
            continue
        gpu_chain = _pci_chain(system, gpu["pci_address"])
        for nic in nics:
            if not nic.get("pci_address"):
                continue
            nic_chain = _pci_chain(system, nic["pci_address"])
            shared = 0
            for a, b in zip(gpu_chain[:-1], nic_chain[:-1], strict=False):
                if a != b:
                    break
                shared += 1
            if shared >= 2:  # a common bridge below the root port: a PCIe switch
                relation = "same_pcie_switch"
            elif gpu["numa_node"] is not None and gpu["numa_node"] == nic["numa_node"]:
                relation = "same_numa_node"
            elif gpu["numa_node"] is None or nic["numa_node"] is None:
                relation = "unknown"
            else:
                relation = "cross_numa"
            pairs.append(
                {"gpu": gpu["pci_address"], "nic": nic["name"], "relation": relation, "rdma": bool(nic["rdma"])}
            )
    return pairs


SECTIONS = ("gpus", "disks", "nics", "host")


def probe(system: System, sections=SECTIONS) -> dict:
    facts: dict = {}
    if "gpus" in sections:
        facts["gpu"] = probe_gpus(system)
    if "disks" in sections:
        facts["storage"] = probe_disks(system)
    if "nics" in sections:
        facts["network"] = probe_nics(system)
    if "host" in sections:
        facts["host"] = probe_host(system)
    if "gpu" in facts and "network" in facts:
        facts["gpu_nic_affinity"] = gpu_nic_affinity(system, facts["gpu"]["gpus"], facts["network"]["nics"])
    facts["unknown"] = list(system.unknown)
    return facts
