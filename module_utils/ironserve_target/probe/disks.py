"""The probe's disk section: every block device, its kind, stable ids, and why it is in use (the system disk, a
mount, swap, a signature), so the storage roles never touch a disk with data on it."""

from __future__ import annotations

import os

from .. import facts as codes
from .system import System, _int, _numa

_SKIP_BLOCK = ("loop", "ram", "zram", "sr", "fd", "md", "dm-", "nbd")


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
        reasons: list[tuple[str, str]] = []  # (code, sentence)
        if name in system_disks:
            reasons.append((codes.SYSTEM_DISK, "system disk (holds /, /boot or /boot/efi)"))
        for dev in [name, *partitions[name]]:
            majmin = system.read(f"/sys/class/block/{dev}/dev")
            for point in mounts.get(majmin or "", []):
                reasons.append((codes.MOUNTED, f"/dev/{dev} mounted on {point}"))
            if dev in swaps:
                reasons.append((codes.SWAP, f"/dev/{dev} is active swap"))
            holders = system.listdir(f"/sys/class/block/{dev}/holders")
            if holders:
                reasons.append((codes.HELD, f"/dev/{dev} is held by {', '.join(holders)}"))
        if partitions[name]:
            reasons.append((codes.PARTITIONS, f"has partitions ({', '.join(partitions[name])})"))
        signature = _signature(system, name)
        if signature:
            label = {
                "linux_raid_member": "RAID member signature",
                "LVM2_member": "LVM physical volume signature",
                "swap": "swap signature",
            }.get(signature, f"{signature} signature")
            reasons.append((codes.SIGNATURE, label))
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
                "in_use_reasons": [sentence for _, sentence in reasons],
                "in_use_codes": [code for code, _ in reasons],
            }
        )
    return {"disks": disks, "free": [d["name"] for d in disks if not d["in_use"]]}


# NICs ----------------------------------------------------------------------------------------------
