"""Lab machines declared as data.

A lab is a set of QEMU machines that look like GPU servers to the roles: NVMe drives, rotational SCSI
disks, a management NIC and a data NIC on an L2 segment shared by every machine of the lab. The same
declaration is read from a lab file (``ironserve lab up``) and from Molecule's ``platforms`` list.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

# The user-mode network QEMU gives every management NIC; the guest address is fixed by that network.
MGMT_GUEST_ADDRESS = "10.0.2.15"
MGMT_PREFIX = 24
# Where the guest reaches the package bundle: QEMU forwards this address to the controller's bundle server.
BUNDLE_GUEST_ADDRESS = "10.0.2.100"
BUNDLE_GUEST_PORT = 80

# qemu: a machine with its own kernel, disks and RDMA; light: systemd-nspawn, for userspace-only scenarios.
MACHINE_KINDS = ("qemu", "light")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_SERIAL = re.compile(r"^[A-Za-z0-9_-]{1,20}$")


class SpecError(ValueError):
    """A lab declaration that cannot be booted; the message names the field and the fix."""


@dataclass(frozen=True)
class Disk:
    serial: str
    size_gb: int
    rotation_rate: int = 0  # 0: solid state (NVMe); >1: spinning disk RPM reported to the guest


@dataclass(frozen=True)
class Machine:
    name: str
    cpus: int = 2
    memory_mb: int = 1024
    nvme: tuple[Disk, ...] = ()
    hdd: tuple[Disk, ...] = ()
    ssh_port: int | None = None
    mgmt_mac: str = ""
    data_mac: str = ""
    # The machine layer it boots from (molecule/shared/layers.yml); None: the bare base image.
    layer: str | None = None
    kind: str = "qemu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabSpec:
    name: str
    machines: tuple[Machine, ...]
    data_mtu: int = 9000

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "data_mtu": self.data_mtu, "machines": [m.to_dict() for m in self.machines]}


def derived_mac(lab: str, machine: str, role: str) -> str:
    """A stable, locally administered MAC for a lab NIC, so that inventories can name NICs by MAC."""
    digest = hashlib.sha256(f"{lab}/{machine}/{role}".encode()).digest()
    # 0x52 = locally administered, unicast (the QEMU convention).
    return "52:54:" + ":".join(f"{b:02x}" for b in digest[:4])


def _require_int(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{where} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _disks(where: str, items: Any, default_rotation: int) -> tuple[Disk, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise SpecError(f"{where} must be a list of {{serial, size_gb}} entries, got {type(items).__name__}")
    disks = []
    for index, item in enumerate(items):
        at = f"{where}[{index}]"
        if not isinstance(item, dict) or "serial" not in item or "size_gb" not in item:
            raise SpecError(f"{at} needs 'serial' and 'size_gb', got {item!r}")
        serial = str(item["serial"])
        if not _SERIAL.match(serial):
            raise SpecError(f"{at}.serial must be 1-20 letters, digits, '-' or '_', got {serial!r}")
        size = _require_int(f"{at}.size_gb", item["size_gb"], 1, 4096)
        rotation = _require_int(f"{at}.rotation_rate", item.get("rotation_rate", default_rotation), 0, 20000)
        disks.append(Disk(serial=serial, size_gb=size, rotation_rate=rotation))
    return tuple(disks)


def machine_from_dict(lab: str, data: dict[str, Any]) -> Machine:
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(f"machine name must be lowercase letters, digits and '-', starting with a letter: {name!r}")
    where = f"machine {name}"
    layer = data.get("layer")
    if layer is not None and (not isinstance(layer, str) or not _NAME.match(layer)):
        raise SpecError(f"{where}: layer must be the name of a declared layer, got {layer!r}")
    kind = data.get("kind", "qemu")
    if kind not in MACHINE_KINDS:
        raise SpecError(f"{where}: kind must be one of {', '.join(MACHINE_KINDS)}, got {kind!r}")
    if kind == "light" and (data.get("nvme") or data.get("hdd")):
        raise SpecError(
            f"{where}: a light machine has no disks of its own (it shares this machine's kernel); "
            "declare kind: qemu for a machine with NVMe or hard disks"
        )
    port = data.get("ssh_port")
    if port is not None:
        port = _require_int(f"{where}: ssh_port", port, 1024, 65535)
    return Machine(
        name=name,
        cpus=_require_int(f"{where}: cpus", data.get("cpus", 2), 1, 64),
        memory_mb=_require_int(f"{where}: memory_mb", data.get("memory_mb", 1024), 256, 262144),
        nvme=_disks(f"{where}: nvme", data.get("nvme"), 0),
        hdd=_disks(f"{where}: hdd", data.get("hdd"), 7200),
        ssh_port=port,
        mgmt_mac=str(data.get("mgmt_mac") or derived_mac(lab, name, "mgmt")).lower(),
        data_mac=str(data.get("data_mac") or derived_mac(lab, name, "data")).lower(),
        layer=layer,
        kind=kind,
    )


def lab_from_dict(data: dict[str, Any], name: str | None = None) -> LabSpec:
    """Build a lab from a lab file's content: ``{name, data_mtu, machines: [...]}``."""
    lab_name = name or data.get("name")
    if not isinstance(lab_name, str) or not _NAME.match(lab_name):
        raise SpecError(f"lab name must be lowercase letters, digits and '-', starting with a letter: {lab_name!r}")
    machines_data = data.get("machines")
    if not isinstance(machines_data, list) or not machines_data:
        raise SpecError(f"lab {lab_name}: 'machines' must be a non-empty list")
    machines = tuple(machine_from_dict(lab_name, m) for m in machines_data)
    names = [m.name for m in machines]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        raise SpecError(f"lab {lab_name}: machine name {duplicate!r} is declared twice")
    serials = [d.serial for m in machines for d in (*m.nvme, *m.hdd)]
    for duplicate in sorted({s for s in serials if serials.count(s) > 1}):
        raise SpecError(f"lab {lab_name}: disk serial {duplicate!r} is used twice; serials identify disks")
    ports = [m.ssh_port for m in machines if m.ssh_port is not None]
    for duplicate in sorted({p for p in ports if ports.count(p) > 1}):
        raise SpecError(f"lab {lab_name}: ssh_port {duplicate} is given to two machines")
    mtu = _require_int(f"lab {lab_name}: data_mtu", data.get("data_mtu", 9000), 1280, 9216)
    return LabSpec(name=lab_name, machines=machines, data_mtu=mtu)


def lab_from_platforms(name: str, platforms: list[dict[str, Any]]) -> LabSpec:
    """Build a lab from Molecule's ``platforms`` (one entry per machine, same keys as a lab file)."""
    return lab_from_dict({"machines": platforms}, name=name)
