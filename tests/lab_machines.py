"""Compare what a lab machine sees with what it was declared to have.

Used by the bench's own tests (the probe scenario's verify) and unit-tested on recorded ``lsblk`` output. Each
function returns the list of differences as sentences; empty means the machine matches.
"""

from __future__ import annotations

from typing import Any

from ironserve.lab.spec import Disk, Machine

GIB = 1024**3


def _describe(disks: dict[str, int]) -> str:
    return ", ".join(f"{serial} ({size // GIB} GiB)" for serial, size in sorted(disks.items())) or "none"


def disk_mismatches(machine: Machine, lsblk_devices: list[dict[str, Any]]) -> list[str]:
    """Compare ``lsblk --json --bytes --nodeps -o NAME,SIZE,SERIAL,ROTA,TRAN,TYPE`` with the declaration.

    NVMe drives must be non-rotational on the nvme transport, hard disks rotational sd devices; both are
    matched by serial and size. The virtio root disk of the lab is not part of the declaration.
    """
    problems: list[str] = []
    seen_nvme: dict[str, int] = {}
    seen_hdd: dict[str, int] = {}
    for device in lsblk_devices:
        if device.get("type") != "disk":
            continue
        name, serial = device["name"], (device.get("serial") or "").strip()
        size, rotational = int(device["size"]), bool(int(device["rota"]))
        if name.startswith("nvme"):
            if rotational:
                problems.append(f"{name} ({serial}) is an NVMe drive reported rotational")
            seen_nvme[serial] = size
        elif name.startswith("sd"):
            if not rotational:
                problems.append(f"{name} ({serial}) is a hard disk reported non-rotational")
            seen_hdd[serial] = size
    for kind, declared, seen in (("NVMe", machine.nvme, seen_nvme), ("hard disk", machine.hdd, seen_hdd)):
        expected = {disk.serial: disk.size_gb * GIB for disk in declared}
        if expected != seen:
            problems.append(
                f"{machine.name}: {kind} drives differ from the declaration: "
                f"declared {_describe(expected)}, found {_describe(seen)}"
            )
    return problems


def nic_mismatches(machine: Machine, nics: dict[str, dict[str, Any]], data_mtu: int) -> list[str]:
    """Compare the machine's physical NICs (name -> {mac, mtu}) with its declared management and data NICs."""
    problems: list[str] = []
    by_mac = {nic["mac"].lower(): name for name, nic in nics.items()}
    expected = {machine.mgmt_mac: "management", machine.data_mac: "data"}
    if set(by_mac) != set(expected):
        problems.append(
            f"{machine.name}: NICs differ from the declaration: declared "
            f"{', '.join(f'{role} {mac}' for mac, role in sorted(expected.items()))}; "
            f"found {', '.join(f'{name} {mac}' for mac, name in sorted(by_mac.items())) or 'none'}"
        )
    data_nic = by_mac.get(machine.data_mac)
    if data_nic is not None and int(nics[data_nic]["mtu"]) != data_mtu:
        problems.append(f"{machine.name}: data NIC {data_nic} has MTU {nics[data_nic]['mtu']}, declared {data_mtu}")
    return problems


def with_extra_nvme(machine: Machine) -> Machine:
    """The same machine declared with one more NVMe drive: used to prove the comparison catches a difference."""
    extra = Disk(serial=f"{machine.name[:12]}-EXTRA", size_gb=1)
    return Machine(**{**machine.__dict__, "nvme": (*machine.nvme, extra)})
