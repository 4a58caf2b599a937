"""The shape of the probe's facts (``ironserve_hw``): every key the probe returns, its types, whether it is always
there, and the reason codes a consumer decides on (the human text beside them is for people).

The one description of the facts: the probe's sections build them, ``problems`` checks them (the unit tests check
every probe result they make, the probe scenario the real one), and the controller's rules read the codes from here
instead of matching sentences. Stdlib only: it runs on the target with the probe.
"""

from __future__ import annotations

NONE = type(None)
TEXT = (str, NONE)
NUMBER = (int, NONE)

# Why a disk is in use, as codes (``in_use_codes``), in the order of ``in_use_reasons``' sentences.
SYSTEM_DISK = "system_disk"  # holds /, /boot or /boot/efi: never used, whatever the inventory says
MOUNTED = "mounted"
SWAP = "swap"
HELD = "held"  # a holder (md, dm) has it
PARTITIONS = "partitions"
SIGNATURE = "signature"  # a filesystem, RAID, LVM or partition-table signature (blkid -p)
IN_USE_CODES = (SYSTEM_DISK, MOUNTED, SWAP, HELD, PARTITIONS, SIGNATURE)

# Per place in the facts ('[]' for the elements of a list): key -> (allowed types, always present).
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "": {
        "gpu": ((dict,), False),
        "storage": ((dict,), False),
        "network": ((dict,), False),
        "host": ((dict,), False),
        "gpu_nic_affinity": ((list,), False),  # with both the gpu and nic sections
        "unknown": ((list,), True),
    },
    "gpu": {
        "gpus": ((list,), True),
        "count": ((int,), True),
        "models": ((list,), True),
        "nvswitches": ((list,), True),
        "nvswitch": ((bool,), True),
        "driver_loaded": ((bool,), True),
        "driver_module_flavour": (TEXT, True),
        "driver_version": (TEXT, True),
        "cuda_version": (TEXT, True),
    },
    "gpu.gpus[]": {
        "vendor": ((str,), True),
        "device_id": (TEXT, True),
        "model": ((str,), True),
        "known": ((bool,), True),
        "architecture": (TEXT, True),
        "compute_capability": (TEXT, True),
        "memory_gib": ((int, float, NONE), True),
        "open_kernel_module": (TEXT, True),
        "fp8": ((bool, NONE), True),
        "high_bandwidth_form": ((bool, NONE), True),
        "pci_address": (TEXT, True),
        "numa_node": (NUMBER, True),
        "source": ((str,), True),
        # PCI-found GPUs (a Jetson's integrated GPU has none of these)
        "architecture_source": (TEXT, False),
        "name_source": (TEXT, False),
        "newest_driver_branch": (NUMBER, False),
        "kernel_driver": (TEXT, False),
        "driver_version": (TEXT, False),
        "cuda_version": (TEXT, False),
        "uuid": (TEXT, False),
        "mig_mode": (TEXT, False),
        "mig_devices": ((list,), False),
        "ecc_mode": (TEXT, False),
        "fabric_state": (TEXT, False),
        "fabric_status": (TEXT, False),
        # where the loaded driver reports them (nvidia-smi, rocm-smi)
        "memory_mib": (NUMBER, False),
        "product_name": (TEXT, False),
        "persistence_mode": (TEXT, False),
        # Jetson
        "integrated": ((bool,), False),
    },
    "gpu.gpus[].mig_devices[]": {
        "gpu_instance_id": (NUMBER, True),
        "compute_instance_id": (NUMBER, True),
        "multiprocessors": (NUMBER, True),
        "memory_mib": (NUMBER, True),
    },
    "gpu.nvswitches[]": {"pci_address": ((str,), True), "model": ((str,), True)},
    "storage": {"disks": ((list,), True), "free": ((list,), True)},
    "storage.disks[]": {
        "name": ((str,), True),
        "path": ((str,), True),
        "kind": ((str,), True),
        "rotational": ((bool,), True),
        "size_bytes": ((int,), True),
        "model": (TEXT, True),
        "serial": (TEXT, True),
        "by_id": (TEXT, True),
        "by_id_all": ((list,), True),
        "numa_node": (NUMBER, True),
        "partitions": ((list,), True),
        "signature": (TEXT, True),
        "in_use": ((bool,), True),
        "in_use_reasons": ((list,), True),
        "in_use_codes": ((list,), True),
    },
    "network": {"nics": ((list,), True), "rdma_devices": ((list,), True)},
    "network.nics[]": {
        "name": ((str,), True),
        "mac": ((str,), True),
        "driver": (TEXT, True),
        "pci_address": (TEXT, True),
        "speed_mbps": (NUMBER, True),
        "mtu": (NUMBER, True),
        "link": ((str,), True),
        "numa_node": (NUMBER, True),
        "sriov_total_vfs": (NUMBER, True),
        "rdma": ((list,), True),
    },
    "network.nics[].rdma[]": {
        "device": ((str,), True),
        "port": ((int,), True),
        "netdev": ((str,), True),
        "state": ((str,), True),
        "link_layer": ((str,), True),
        "rate_gbits": ((float, NONE), True),
        "soft_roce": ((bool,), True),
        "gids": ((list,), True),
    },
    "network.nics[].rdma[].gids[]": {
        "index": ((int,), True),
        "gid": ((str,), True),
        "type": ((str,), True),
        "netdev": ((str,), True),
    },
    "host": {
        "cpu_model": (TEXT, True),
        "sockets": (NUMBER, True),
        "cores": (NUMBER, True),
        "threads": (NUMBER, True),
        "memory_mib": (NUMBER, True),
        "numa_nodes": ((int,), True),
        "hugepages_total": (NUMBER, True),
        "hugepage_size_kib": (NUMBER, True),
        "kernel": (TEXT, True),
        "os_id": (TEXT, True),
        "os_version": (TEXT, True),
        "os_name": (TEXT, True),
        "os_codename": (TEXT, True),
        "iommu": ((bool,), True),
        "secure_boot": ((str,), True),
        "virtualised": ((bool,), True),
    },
    "gpu_nic_affinity[]": {
        "gpu": ((str,), True),
        "nic": ((str,), True),
        "relation": ((str,), True),
        "rdma": ((bool,), True),
    },
}
# The same shape wherever an RDMA port is listed.
SCHEMA["network.rdma_devices[]"] = SCHEMA["network.nics[].rdma[]"]
SCHEMA["network.rdma_devices[].gids[]"] = SCHEMA["network.nics[].rdma[].gids[]"]
# Lists of plain values.
VALUES = {"unknown[]": str, "gpu.models[]": str, "storage.free[]": str, "storage.disks[].by_id_all[]": str}
VALUES |= {"storage.disks[].partitions[]": str, "storage.disks[].in_use_reasons[]": str}
VALUES |= {"storage.disks[].in_use_codes[]": str}


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is NONE else t.__name__ for t in types)


def problems(facts: dict, where: str = "") -> list[str]:
    """Every difference between ``facts`` (``ironserve_hw``, or the part at ``where``) and the schema: a missing
    key, an unknown one, a wrong type, an unknown reason code. Empty when they match."""
    found: list[str] = []
    shape = SCHEMA.get(where)
    if shape is None:
        return [f"{where or 'the facts'}: no such place in the schema"]
    label = where or "the facts"
    for key, (types, always) in shape.items():
        if key not in facts:
            if always:
                found.append(f"{label}: '{key}' is missing")
            continue
        value = facts[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            found.append(f"{label}.{key}: {type(value).__name__}, the schema says {_type_names(types)}")
            continue
        place = f"{where}.{key}" if where else key
        if isinstance(value, dict):
            found += problems(value, place)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if f"{place}[]" in SCHEMA:
                    found += [p.replace(f"{place}[]", f"{place}[{index}]", 1) for p in problems(item, f"{place}[]")]
                elif not isinstance(item, VALUES.get(f"{place}[]", str)):
                    found.append(f"{place}[{index}]: {type(item).__name__}, the schema says a string")
    found += [f"{label}: '{key}' is not in the schema" for key in facts if key not in shape]
    if where == "storage.disks[]":
        found += [
            f"{label}.in_use_codes: unknown code '{c}'" for c in facts.get("in_use_codes", []) if c not in IN_USE_CODES
        ]
        if len(facts.get("in_use_codes", [])) != len(facts.get("in_use_reasons", [])):
            found.append(f"{label}: one code per reason expected")
    return found


def disk_index(disks: list[dict]) -> dict[str, dict]:
    """Every name a disk can be declared by: /dev/NAME, NAME, each /dev/disk/by-id link, its serial."""
    index: dict[str, dict] = {}
    for disk in disks:
        for key in [disk["path"], disk["name"], *disk.get("by_id_all", []), disk.get("serial")]:
            if key:
                index[key] = disk
    return index


def is_system_disk(disk: dict) -> bool:
    """By its code; a record without codes (made by hand, or by an older probe) that is in use counts as the system
    disk, so no rule would ever wipe it."""
    codes = disk.get("in_use_codes")
    return bool(disk.get("in_use")) if codes is None else SYSTEM_DISK in codes
