"""Preflight: compare the probe's facts with what the inventory declares, and list every difference.

Used by the preflight role through the ``ironserve_preflight_problems`` filter; each problem is one
sentence that names the inventory variable and what was found, so one failure can list them all.
"""

from __future__ import annotations

from typing import Any

from ironserve_target import gpu_ids
from ironserve_target.facts import disk_index, is_system_disk

from ironserve import network, role_defaults, storage
from ironserve.driver_policy import PROFILES


def _gpu_problems(gpu: dict, declared: dict) -> list[str]:
    problems = []
    gpus = gpu.get("gpus", [])
    found = ", ".join(f"{g['model']} at {g['pci_address'] or 'SoC'}" for g in gpus) or "none"
    expected_count = declared.get("gpu_count")
    if expected_count is not None and len(gpus) != expected_count:
        problems.append(f"ironserve_gpu_count is {expected_count}, but the probe found {len(gpus)} GPU(s): {found}")
    expected_model = declared.get("gpu_model")
    if expected_model:
        wrong = [g for g in gpus if expected_model.lower() not in g["model"].lower()]
        if wrong or not gpus:
            problems.append(f"ironserve_gpu_model is '{expected_model}', but the probe found: {found}")
    for g in gpus:
        if not g.get("known", True):
            problems.append(
                f"{gpu_ids.named(g)}: its architecture neither NVIDIA's device lists (driver "
                f"{gpu_ids.nvidia_lists.DRIVER_VERSION}) nor "
                "ironserve's hardware rules know: add it to module_utils/ironserve_target/gpu_ids.py, or for NVIDIA "
                "regenerate module_utils/ironserve_target/nvidia_devices.py from a newer driver's packages "
                "(tools/nvidia_device_list.py)"
            )
    profile_name = declared.get("profile")
    profile = PROFILES.get(profile_name or "")
    if profile is None:
        return [
            *problems,
            f"ironserve_hardware_profile is '{profile_name}'; use one of: {', '.join(sorted(PROFILES))}",
        ]
    if profile["vendor"] is None:
        return problems
    if not gpus:
        problems.append(
            f"ironserve_hardware_profile '{profile_name}' ({profile['description']}) needs GPUs, and the probe "
            "found none; set ironserve_image_build: true to prepare a host without its GPUs"
        )
    for g in gpus:
        if g["vendor"] != profile["vendor"]:
            problems.append(
                f"ironserve_hardware_profile '{profile_name}' needs {profile['vendor']} GPUs, "
                f"found {g['model']} ({g['vendor']}) at {g['pci_address'] or 'SoC'}"
            )
        elif not gpu_ids.capability_at_least(g.get("compute_capability"), profile["min_compute_capability"]):
            problems.append(
                f"ironserve_hardware_profile '{profile_name}' needs compute capability "
                f"{profile['min_compute_capability']} or newer, {g['model']} has {g.get('compute_capability')}"
            )
    return problems


def _disk_problems(storage: dict, tiers: dict[str, list[str]]) -> list[str]:
    problems = []
    index = disk_index(storage.get("disks", []))
    claimed: dict[str, str] = {}
    for tier, devices in tiers.items():
        variable = f"{tier}_tier_devices"
        for device in devices or []:
            disk = index.get(device)
            if disk is None:
                problems.append(f"{variable} names {device}, which this host does not have")
                continue
            owner = claimed.get(disk["name"])
            if owner == variable:
                problems.append(f"{variable} names /dev/{disk['name']} twice (as {device})")
            elif owner:
                problems.append(f"/dev/{disk['name']} is named in both {owner} and {variable}")
            claimed[disk["name"]] = variable
            if is_system_disk(disk):
                problems.append(f"{variable} names {device} (/dev/{disk['name']}), the system disk")
    return problems


def _nic_problems(network_facts: dict, declared: dict) -> list[str]:
    nics = [nic for nic in network_facts.get("nics", []) if nic.get("mac")]
    mgmt = (declared.get("mgmt_mac") or "").lower()
    data = [mac.lower() for mac in declared.get("data_macs") or []]
    problems = network.missing_nics_problem("mgmt_network_mac", network.select_nics(nics, [mgmt])["missing_macs"], nics)
    for mac in data:
        if mac == mgmt:
            problems.append(f"data_network_macs lists {mac}, the management NIC; the data plane must not use it")
        else:
            missing = network.select_nics(nics, [mac])["missing_macs"]
            problems += network.missing_nics_problem("data_network_macs", missing, nics)
    return problems


# The releases whose packages the roles pin (roles/*/vars/Debian.yml). On another release the first pinned install
# fails halfway through a run, after earlier stages have changed the host; preflight refuses it before that.
SUPPORTED_RELEASES = {("debian", "13"): "Debian 13 (trixie)"}


def _os_problems(host: dict[str, Any]) -> list[str]:
    os_id, version = host.get("os_id"), host.get("os_version")
    if os_id is None or (os_id, version) in SUPPORTED_RELEASES:
        return []
    running = host.get("os_name") or f"{os_id} {version}"
    return [
        f"the host runs {running}, and the roles pin the packages of {', '.join(SUPPORTED_RELEASES.values())}: "
        "install that release, or add the pins for this one (roles/*/vars/<OS>.yml)"
    ]


DEFAULT_PROFILE = "realtime"


def _boolean(value: Any) -> bool:
    """A flag as Ansible's bool filter reads it ('false' and 'no' are false)."""
    return value.strip().lower() in ("yes", "on", "true", "1", "y", "t") if isinstance(value, str) else bool(value)


def declaration(variables: Any) -> dict[str, Any]:
    """What :func:`problems` compares the probe with, from a host's variables (hostvars): the inventory's values,
    else the roles' own defaults (role_defaults), each variable by its own name."""

    def get(name: str, default: Any = None) -> Any:  # site-wide variables: no role owns them
        value = variables.get(name)
        return default if value is None else value

    def tier(name: str) -> Any:
        return role_defaults.resolved(variables, name)

    return {
        "profile": get("ironserve_hardware_profile", DEFAULT_PROFILE),
        "image_build": _boolean(get("ironserve_image_build", False)),
        "gpu_count": get("ironserve_gpu_count"),
        "gpu_model": get("ironserve_gpu_model"),
        "tiers": {"hot": tier("hot_tier_devices"), "warm": tier("warm_tier_devices")},
        "mounts": {name: tier(name) for name in ("hot_tier_mount_path", "warm_tier_mount_path")},
        "mgmt_mac": tier("mgmt_network_mac") or None,
        "data_macs": tier("data_network_macs"),
    }


def problems(hw: dict[str, Any], declared: dict[str, Any]) -> list[str]:
    """Every mismatch between the probed host ``hw`` (ironserve_hw) and the inventory's declarations.

    ``declared`` keys: profile, gpu_count, gpu_model, image_build, tiers ({hot: [...], warm: [...]}),
    mounts ({hot_tier_mount_path: ..., warm_tier_mount_path: ...}), mgmt_mac, data_macs.
    """
    found: list[str] = _os_problems(hw.get("host", {}))
    if declared.get("image_build"):
        profile = declared.get("profile")
        if profile not in PROFILES:
            found.append(f"ironserve_hardware_profile is '{profile}'; use one of: {', '.join(sorted(PROFILES))}")
    else:
        found += _gpu_problems(hw.get("gpu", {}), declared)
    found += _disk_problems(hw.get("storage", {}), declared.get("tiers") or {})
    found += storage.mount_path_problems(declared.get("mounts") or {})
    found += _nic_problems(hw.get("network", {}), declared)
    return found
