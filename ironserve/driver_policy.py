"""Driver policy: which NVIDIA driver flavour, branch and CUDA toolkit a host's GPUs need, and every reason a choice
cannot work, for the GPU stage's roles (through the filters), preflight and the CLI. Runs on the controller.
"""

from __future__ import annotations

from ironserve_target.gpu_ids import ARCHITECTURES, capability_at_least, named, normalise_id, nvidia_lists

# The hardware profiles of our design: what a host of each profile must have (preflight checks them; the GPU stage
# installs the stack of a profile's vendor where a host has no GPU yet).
PROFILES: dict[str, dict] = {
    "realtime": {
        "vendor": "nvidia",
        "min_compute_capability": "8.0",
        "description": "real-time serving on datacenter NVIDIA GPUs (A100 class or newer)",
    },
    "batch": {
        "vendor": "amd",
        "min_compute_capability": None,
        "description": "batch inference on AMD Instinct (MI250X class or newer)",
    },
    "edge": {
        "vendor": "nvidia",
        "min_compute_capability": "8.7",
        "integrated": True,
        "description": "edge inference on NVIDIA Jetson AGX Orin",
    },
    "none": {
        "vendor": None,
        "min_compute_capability": None,
        "description": "no accelerator (image builds and the lab)",
    },
}


# Driver and CUDA rules -----------------------------------------------------------------------------
# The long-term branch new installs get; 580 is also the last branch that drives Pascal and Volta.
DEFAULT_DRIVER_BRANCH = 580

# CUDA toolkit -> (oldest Linux driver it needs, oldest and newest compute capability it builds for), from
# NVIDIA's CUDA release notes (toolkit/driver table) and the architectures each release added or removed:
# 12.8 added Blackwell (10.0, 12.0); 13.0 removed Maxwell, Pascal and Volta.
CUDA_TOOLKITS: dict[str, tuple[str, str, str]] = {
    "12.2": ("535.54.03", "5.0", "9.0"),
    "12.4": ("550.54.14", "5.0", "9.0"),
    "12.6": ("560.28.03", "5.0", "9.0"),
    "12.8": ("570.26", "5.0", "12.0"),
    "12.9": ("575.51.03", "5.0", "12.0"),
    "13.0": ("580.65.06", "7.5", "12.0"),
}


def gpu_stacks(gpu_facts: dict, profile: str | None) -> list[str]:
    """Which vendors' GPU stacks the GPU stage installs on a host: those of the GPUs the probe found, or, on a host
    without them (an image build), the hardware profile's vendor (NVIDIA's for the profiles that name none)."""
    found = sorted({g.get("vendor") for g in gpu_facts.get("gpus", [])} & {"nvidia", "amd"})
    if found:
        return found
    vendor = PROFILES.get(profile or "", {}).get("vendor")
    return [vendor] if vendor in ("nvidia", "amd") else ["nvidia"]


class HardwareRuleError(ValueError):
    """A choice that cannot work on this hardware; the message says why and what would."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _nvidia(gpus: list[dict]) -> list[dict]:
    return [g for g in gpus if g.get("vendor") == "nvidia" and g.get("architecture") != "ampere-orin"]


# Driver releases whose kernel module is known not to build on the distribution's kernels: (source, branch,
# flavour) -> what was measured. auto never chooses these; an explicit nvidia_driver_flavour still may (another
# kernel may build it), and the role then names the compiler's errors.
KNOWN_MODULE_BUILD_FAILURES: dict[tuple[str, int, str], str] = {
    ("distribution", 550, "open"): (
        "Debian 13's open-flavour 550.163.01 module does not build for trixie's kernels (6.12: pci_resize_resource "
        "takes a fourth argument; measured by the gpu-dkms bench scenario)"
    ),
}


def kernel_module_flavour(
    gpus: list[dict], override: str | None = None, source: str | None = None, branch: int | None = None
) -> str:
    """'open' or 'proprietary' NVIDIA kernel modules for these GPUs (``source`` and ``branch``: the driver's).

    Turing and newer run the open modules (NVIDIA's default since branch 560), Blackwell only those; Pascal and
    Volta only the proprietary ones: the wrong flavour installs cleanly and finds no device. ``auto`` prefers the
    open flavour and never takes one known not to build for this source and branch (KNOWN_MODULE_BUILD_FAILURES);
    without GPUs (an image build) the same. GPUs the rules cannot place (``unplaceable``) are left out here:
    driver_plan names them.
    """
    nvidia = [g for g in _nvidia(gpus) if g not in unplaceable(gpus)]  # driver_plan names those once
    required = sorted({g["model"] for g in nvidia if g.get("open_kernel_module") == "required"})
    unsupported = sorted({g["model"] for g in nvidia if g.get("open_kernel_module") == "unsupported"})
    if required and unsupported:
        raise HardwareRuleError(
            f"{', '.join(required)} need the open kernel modules and {', '.join(unsupported)} cannot use them: "
            "no single driver flavour drives this host; move one generation to another host"
        )
    if override == "open" and unsupported:
        raise HardwareRuleError(f"the open kernel modules do not drive {', '.join(unsupported)}; use 'proprietary'")
    if override == "proprietary" and required:
        raise HardwareRuleError(f"{', '.join(required)} need the open kernel modules; use 'open'")
    if override in ("open", "proprietary"):
        return override
    if override not in (None, "auto"):
        raise HardwareRuleError(f"unknown kernel module flavour '{override}'; use auto, open or proprietary")
    candidates = ["open"] if required else ["proprietary"] if unsupported else ["open", "proprietary"]
    working = [f for f in candidates if (source or "", branch or 0, f) not in KNOWN_MODULE_BUILD_FAILURES]
    if not working:
        broken = "; ".join(KNOWN_MODULE_BUILD_FAILURES[(source or "", branch or 0, f)] for f in candidates)
        fix = (
            "set nvidia_driver_source: cuda_repo (NVIDIA's repository, or a mirror of it)"
            if source == "distribution"
            else "choose another nvidia_driver_cuda_branch (and its nvidia_driver_cuda_version)"
        )
        needs = f"{', '.join(required)} need the open kernel modules, and " if required else ""
        raise HardwareRuleError(f"{needs}{broken}: {fix}")
    return working[0]


def unplaceable(gpus: list[dict]) -> list[dict]:
    """NVIDIA GPUs in no list and no known chip family: the rules cannot tell which flavour or branch drives them."""
    return [g for g in _nvidia(gpus) if g.get("architecture") is None and g.get("open_kernel_module") is None]


def driver_branch_problems(branch: int, gpus: list[dict]) -> list[str]:
    """Why a driver branch cannot drive these GPUs (empty when it can)."""
    problems = []
    for gpu in _nvidia(gpus):
        if gpu in unplaceable(gpus):
            continue  # driver_plan names it
        facts = ARCHITECTURES.get(gpu.get("architecture") or "", {})
        generation = gpu.get("architecture") or "a legacy generation"
        oldest = facts.get("min_driver_branch")
        newest = gpu.get("newest_driver_branch") or facts.get("max_driver_branch")
        if oldest is not None and branch < oldest:
            problems.append(f"{gpu['model']} ({generation}) needs driver branch {oldest} or newer, not {branch}")
        if newest is not None and branch > newest:
            problems.append(f"{gpu['model']} ({generation}) is driven by branch {newest} at the newest, not {branch}")
    return sorted(set(problems))


def cuda_toolkit_for(driver_version: str, gpus: list[dict]) -> str:
    """The newest CUDA toolkit this driver runs that still builds for every GPU here."""
    if not driver_version or not all(part.isdigit() for part in str(driver_version).split(".")):
        raise HardwareRuleError(f"'{driver_version}' is not a driver version (like 550.163.01)")
    unplaced = [named(g) for g in _nvidia(gpus) if not g.get("compute_capability")]
    if unplaced:
        raise HardwareRuleError(
            f"the compute capability of {', '.join(unplaced)} is unknown, so no CUDA toolkit can be chosen for it; "
            "load the driver first (nvidia-smi reports it) or set cuda_toolkit_version"
        )
    capabilities = [g["compute_capability"] for g in _nvidia(gpus)]
    for toolkit, (oldest_driver, oldest_cc, newest_cc) in sorted(
        CUDA_TOOLKITS.items(), key=lambda item: _version(item[0]), reverse=True
    ):
        if _version(str(driver_version)) < _version(oldest_driver):
            continue
        if all(capability_at_least(cc, oldest_cc) and capability_at_least(newest_cc, cc) for cc in capabilities):
            return toolkit
    raise HardwareRuleError(
        f"no CUDA toolkit of {', '.join(CUDA_TOOLKITS)} runs on driver {driver_version} and builds for compute "
        f"capabilities {', '.join(sorted(set(capabilities))) or 'none'}"
    )


def driver_plan(
    gpu_facts: dict,
    source: str,
    branch: int,
    flavour_override: str | None = None,
    secure_boot: str = "unknown",
    signing_key: bool = False,
) -> dict:
    """What the nvidia_driver role installs on a probed host, and every reason it cannot, at once.

    ``gpu_facts`` is the probe's ``gpu`` section. Fabric Manager is needed exactly where NVSwitches are (it must
    match the driver's version, and only NVIDIA's CUDA repository carries it); Blackwell NVSwitch systems (NVLink 5)
    also need the NVLink subnet manager and the mlx5_ib and ib_umad modules. Secure Boot needs a signing key for
    DKMS modules.
    """
    gpus = gpu_facts.get("gpus", [])
    problems: list[str] = []
    try:
        flavour = kernel_module_flavour(gpus, flavour_override, source, branch)
    except HardwareRuleError as exc:
        flavour = None
        problems.append(f"nvidia_driver_flavour: {exc}")
    branch_variable = "nvidia_driver_cuda_branch" if source == "cuda_repo" else "nvidia_driver_source"
    branch_fix = (
        "; choose another nvidia_driver_cuda_branch (and its nvidia_driver_cuda_version)"
        if source == "cuda_repo"
        else f"; the distribution's driver is branch {branch}: set nvidia_driver_source: cuda_repo for another"
    )
    problems += [f"{branch_variable}: {p}{branch_fix}" for p in driver_branch_problems(branch, gpus)]
    problems += [
        f"{named(gpu)} is in neither NVIDIA's device lists of driver {nvidia_lists.DRIVER_VERSION} nor a chip family "
        "the hardware rules know, so they cannot tell which driver flavour and branch drive it: add it to "
        "module_utils/ironserve_target/gpu_ids.py (_MODELS, or its family to NVIDIA_FAMILY_RANGES), or regenerate "
        "module_utils/ironserve_target/nvidia_devices.py from a newer driver's packages "
        "(tools/nvidia_device_list.py)"
        for gpu in unplaceable(gpus)
    ]
    fabric_manager = bool(gpu_facts.get("nvswitch"))
    nvlink5 = fabric_manager and any(g.get("architecture") == "blackwell" for g in _nvidia(gpus))
    if fabric_manager and source != "cuda_repo":
        problems.append(
            "the probe found NVSwitch, so Fabric Manager must run at exactly the driver's version, and only NVIDIA's "
            "CUDA repository carries both: set nvidia_driver_source: cuda_repo (or mirror that repository)"
        )
    if secure_boot == "enabled" and not signing_key:
        problems.append(
            "Secure Boot is enabled, so unsigned DKMS modules will not load: set nvidia_driver_signing_key and "
            "nvidia_driver_signing_cert (a machine owner key enrolled with 'mokutil --import'), or disable Secure Boot"
        )
    return {"flavour": flavour, "fabric_manager": fabric_manager, "nvlink5": nvlink5, "problems": problems}


def driver_version_changes(dpkg_lines: list[str], wanted: list[str], other_flavour: list[str]) -> list[str]:
    """What installing ``wanted`` ('name=version' pins) would change in the driver already on the host.

    ``dpkg_lines`` is ``dpkg-query --show --showformat='${db:Status-Status} ${Package} ${Version}\\n'`` for those
    packages; ``other_flavour`` names the packages of the kernel-module flavour not chosen. Empty on a fresh host
    and on a re-run: a driver change (version or flavour) takes every GPU job down and needs a reboot, so the role
    makes it only when asked to.
    """
    installed = {}
    for line in dpkg_lines:
        status, _, rest = line.partition(" ")
        name, _, version = rest.partition(" ")
        if status == "installed" and version:
            installed[name] = version
    changes = []
    for pin in wanted:
        name, _, version = pin.partition("=")
        current = installed.get(name)
        if current and version and current != version:
            changes.append(f"{name} {current} -> {version}")
    wanted_names = {pin.partition("=")[0] for pin in wanted}
    for name in other_flavour:
        if name in installed and name not in wanted_names:
            changes.append(f"{name} {installed[name]} -> removed (the other kernel-module flavour)")
    return changes


def smi_mismatches(probed_gpus: list[dict], smi_lines: list[str]) -> list[str]:
    """How what nvidia-smi sees differs from the GPUs the probe found on the PCI bus (empty when it matches).

    ``smi_lines`` is ``nvidia-smi --query-gpu=pci.bus_id,pci.device_id,name --format=csv,noheader``. GPUs are
    matched by PCI address and compared by device id, which names the model exactly; product names differ
    between the driver and our table ("NVIDIA H200" against "H200 SXM 141GB").
    """
    seen = {}
    for line in smi_lines:
        fields = [field.strip() for field in line.split(",", 2)]
        if len(fields) != 3:
            continue
        bus_id, device_id, name = fields
        seen[bus_id.lower()[-12:]] = (normalise_id(device_id), name)
    problems = []
    for gpu in _nvidia(probed_gpus):
        address = (gpu.get("pci_address") or "").lower()
        if not address:
            continue
        found = seen.pop(address, None)
        if found is None:
            problems.append(f"{gpu['model']} at {address}: nvidia-smi does not see it")
        elif found[0] != gpu["device_id"]:
            problems.append(
                f"{address}: the probe found {gpu['model']} ({gpu['device_id']}), nvidia-smi reports {found[1]} "
                f"({found[0]})"
            )
    problems += [f"{name} at {address}: nvidia-smi sees it, the probe did not" for address, (_, name) in seen.items()]
    return problems
