"""Hardware rules: accelerator models by PCI id, their architecture and what each architecture can do.

The one place these rules live. The probe module uses it on the target (module_utils/ironserve_hardware.py
is a link to this file, so it must stay stdlib-only and import nothing from ironserve but the generated
nvidia_devices data), the preflight filters and the CLI use it on the controller.

Which NVIDIA devices a driver release drives, their names and which the open kernel modules drive come from
NVIDIA's own lists in the bundle's driver packages (nvidia_devices.py, written by tools/nvidia_device_list.py).
The table below holds the SKUs the planner sizes: what those lists lack (memory, form factor) and, for them, a name
more precise than NVIDIA's ("H100 SXM5 80GB" for "NVIDIA H100 80GB HBM3") and the architecture. A device
no table names gets its architecture from its chip family's device-id range, and its name from the host's
pci.ids; with the driver loaded, nvidia-smi's name, memory and compute capability win (the probe).
PCI device ids of the table are from the PCI ID Repository (pci.ids, Debian package pci.ids 0.0~2025.06.09);
memory sizes and compute capabilities from the vendors' data sheets and CUDA's compute capability table.
"""

from __future__ import annotations

try:  # on the target, through Ansible's module_utils; on the controller, the package itself
    from ansible.module_utils import ironserve_nvidia_devices as nvidia_lists
except ImportError:  # pragma: no cover - the controller and the unit tests
    from ironserve import nvidia_devices as nvidia_lists

NVIDIA_VENDOR = "0x10de"
AMD_VENDOR = "0x1002"
# PCI classes: 0x0300 VGA, 0x0302 3D controller (datacenter NVIDIA), 0x0380 display (AMD Instinct),
# 0x1200 processing accelerator (newer AMD Instinct), 0x0680 bridge (NVIDIA NVSwitch).
GPU_CLASSES = ("0x0300", "0x0302", "0x0380", "0x1200")
NVSWITCH_CLASS = "0x0680"

# Per architecture: CUDA compute capability (or the AMD gfx target), whether NVIDIA's open kernel modules
# are unsupported, supported or required, FP8 tensor support, and the oldest driver branch that runs it.
ARCHITECTURES: dict[str, dict] = {
    "kepler": {
        "vendor": "nvidia",
        "compute_capability": "3.5",
        "open_kernel_module": "unsupported",
        "fp8": False,
        "min_driver_branch": 319,
        "max_driver_branch": 470,
    },
    "maxwell": {
        "vendor": "nvidia",
        "compute_capability": "5.0",
        "open_kernel_module": "unsupported",
        "fp8": False,
        "min_driver_branch": 340,
        "max_driver_branch": 580,
    },
    "pascal": {
        "vendor": "nvidia",
        "compute_capability": "6.0",
        "open_kernel_module": "unsupported",
        "fp8": False,
        "min_driver_branch": 375,
        "max_driver_branch": 580,
    },
    "pascal-gp10x": {
        "vendor": "nvidia",
        "compute_capability": "6.1",
        "open_kernel_module": "unsupported",
        "fp8": False,
        "min_driver_branch": 375,
        "max_driver_branch": 580,
    },
    "volta": {
        "vendor": "nvidia",
        "compute_capability": "7.0",
        "open_kernel_module": "unsupported",
        "fp8": False,
        "min_driver_branch": 384,
        "max_driver_branch": 580,
    },
    "turing": {
        "vendor": "nvidia",
        "compute_capability": "7.5",
        "open_kernel_module": "supported",
        "fp8": False,
        "min_driver_branch": 410,
    },
    "ampere": {
        "vendor": "nvidia",
        "compute_capability": "8.0",
        "open_kernel_module": "supported",
        "fp8": False,
        "min_driver_branch": 450,
    },
    "ampere-ga10x": {
        "vendor": "nvidia",
        "compute_capability": "8.6",
        "open_kernel_module": "supported",
        "fp8": False,
        "min_driver_branch": 455,
    },
    "ampere-orin": {
        "vendor": "nvidia",
        "compute_capability": "8.7",
        "open_kernel_module": "not_applicable",
        "fp8": False,
        "min_driver_branch": None,
    },
    "ada": {
        "vendor": "nvidia",
        "compute_capability": "8.9",
        "open_kernel_module": "supported",
        "fp8": True,
        "min_driver_branch": 525,
    },
    "hopper": {
        "vendor": "nvidia",
        "compute_capability": "9.0",
        "open_kernel_module": "supported",
        "fp8": True,
        "min_driver_branch": 525,
    },
    "blackwell": {
        "vendor": "nvidia",
        "compute_capability": "10.0",
        "open_kernel_module": "required",
        "fp8": True,
        "min_driver_branch": 570,
    },
    "blackwell-gb20x": {
        "vendor": "nvidia",
        "compute_capability": "12.0",
        "open_kernel_module": "required",
        "fp8": True,
        "min_driver_branch": 570,
    },
    "cdna2": {
        "vendor": "amd",
        "compute_capability": "gfx90a",
        "open_kernel_module": "not_applicable",
        "fp8": False,
        "min_driver_branch": None,
    },
    "cdna3": {
        "vendor": "amd",
        "compute_capability": "gfx942",
        "open_kernel_module": "not_applicable",
        "fp8": True,
        "min_driver_branch": None,
    },
}

# (vendor, device id) -> (model, architecture, memory GiB, NVLink/Infinity Fabric capable form factor)
_MODELS: dict[tuple[str, str], tuple[str, str, int, bool]] = {
    (NVIDIA_VENDOR, "0x15f7"): ("Tesla P100 PCIe 12GB", "pascal", 12, False),
    (NVIDIA_VENDOR, "0x15f8"): ("Tesla P100 PCIe 16GB", "pascal", 16, False),
    (NVIDIA_VENDOR, "0x15f9"): ("Tesla P100 SXM2 16GB", "pascal", 16, True),
    (NVIDIA_VENDOR, "0x1b38"): ("Tesla P40", "pascal-gp10x", 24, False),
    (NVIDIA_VENDOR, "0x1db1"): ("Tesla V100 SXM2 16GB", "volta", 16, True),
    (NVIDIA_VENDOR, "0x1db4"): ("Tesla V100 PCIe 16GB", "volta", 16, False),
    (NVIDIA_VENDOR, "0x1db5"): ("Tesla V100 SXM2 32GB", "volta", 32, True),
    (NVIDIA_VENDOR, "0x1db6"): ("Tesla V100 PCIe 32GB", "volta", 32, False),
    (NVIDIA_VENDOR, "0x1df6"): ("Tesla V100S PCIe 32GB", "volta", 32, False),
    (NVIDIA_VENDOR, "0x1eb8"): ("Tesla T4", "turing", 16, False),
    (NVIDIA_VENDOR, "0x20b0"): ("A100 SXM4 40GB", "ampere", 40, True),
    (NVIDIA_VENDOR, "0x20b1"): ("A100 PCIe 40GB", "ampere", 40, False),
    (NVIDIA_VENDOR, "0x20b2"): ("A100 SXM4 80GB", "ampere", 80, True),
    (NVIDIA_VENDOR, "0x20b5"): ("A100 PCIe 80GB", "ampere", 80, False),
    (NVIDIA_VENDOR, "0x20b7"): ("A30 PCIe", "ampere", 24, False),
    (NVIDIA_VENDOR, "0x20f1"): ("A100 PCIe 40GB", "ampere", 40, False),
    (NVIDIA_VENDOR, "0x20f3"): ("A800 SXM4 80GB", "ampere", 80, True),
    (NVIDIA_VENDOR, "0x2230"): ("RTX A6000", "ampere-ga10x", 48, False),
    (NVIDIA_VENDOR, "0x2235"): ("A40", "ampere-ga10x", 48, False),
    (NVIDIA_VENDOR, "0x2236"): ("A10", "ampere-ga10x", 24, False),
    (NVIDIA_VENDOR, "0x2684"): ("GeForce RTX 4090", "ada", 24, False),
    (NVIDIA_VENDOR, "0x26b1"): ("RTX 6000 Ada Generation", "ada", 48, False),
    (NVIDIA_VENDOR, "0x26b5"): ("L40", "ada", 48, False),
    (NVIDIA_VENDOR, "0x26b9"): ("L40S", "ada", 48, False),
    (NVIDIA_VENDOR, "0x26ba"): ("L20", "ada", 48, False),
    (NVIDIA_VENDOR, "0x27b8"): ("L4", "ada", 24, False),
    (NVIDIA_VENDOR, "0x2321"): ("H100 NVL 94GB", "hopper", 94, False),
    (NVIDIA_VENDOR, "0x2324"): ("H800 SXM5 80GB", "hopper", 80, True),
    (NVIDIA_VENDOR, "0x2330"): ("H100 SXM5 80GB", "hopper", 80, True),
    (NVIDIA_VENDOR, "0x2331"): ("H100 PCIe 80GB", "hopper", 80, False),
    (NVIDIA_VENDOR, "0x2329"): ("H20 96GB", "hopper", 96, True),
    (NVIDIA_VENDOR, "0x2335"): ("H200 SXM 141GB", "hopper", 141, True),
    (NVIDIA_VENDOR, "0x233b"): ("H200 NVL 141GB", "hopper", 141, False),
    (NVIDIA_VENDOR, "0x2342"): ("GH200 96GB", "hopper", 96, True),
    (NVIDIA_VENDOR, "0x2901"): ("B200 180GB", "blackwell", 180, True),
    (NVIDIA_VENDOR, "0x2941"): ("GB200 186GB", "blackwell", 186, True),
    (NVIDIA_VENDOR, "0x2b85"): ("GeForce RTX 5090", "blackwell-gb20x", 32, False),
    (NVIDIA_VENDOR, "0x2bb5"): ("RTX PRO 6000 Blackwell Server Edition", "blackwell-gb20x", 96, False),
    # MI250 and MI250X carry two dies (GCDs); the kernel exposes each as its own PCI device with 64 GiB of HBM.
    (AMD_VENDOR, "0x7408"): ("Instinct MI250X", "cdna2", 64, True),
    (AMD_VENDOR, "0x740c"): ("Instinct MI250X/MI250", "cdna2", 64, True),
    (AMD_VENDOR, "0x740f"): ("Instinct MI210", "cdna2", 64, False),
    (AMD_VENDOR, "0x74a1"): ("Instinct MI300X", "cdna3", 192, True),
    (AMD_VENDOR, "0x74a5"): ("Instinct MI325X", "cdna3", 256, True),
}

# NVSwitch device ids (PCI class 0x0680): the fabric of HGX boards that needs Fabric Manager.
NVSWITCH_DEVICES = {"0x1af1": "A100 NVSwitch (gen 2)", "0x22a3": "H100 NVSwitch (gen 3)"}

# Jetson modules identify themselves by device-tree model, not PCI: integrated GPU, shared memory.
JETSON_MODELS = {
    "Jetson AGX Orin": ("Jetson AGX Orin", "ampere-orin"),
    "Jetson Orin NX": ("Jetson Orin NX", "ampere-orin"),
    "Jetson Orin Nano": ("Jetson Orin Nano", "ampere-orin"),
}

# The hardware profiles of our design: what a host of each profile must have.
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


def sized_models() -> list[tuple[str, str, int, bool]]:
    """The table's models (name, architecture, memory GiB, NVLink form): the ones the planner can size."""
    return list(_MODELS.values())


# Words a model name may carry or leave out: 'MI300X' is the Instinct MI300X, 'RTX 4090' the GeForce RTX 4090.
_OPTIONAL_WORDS = {"nvidia", "amd", "instinct", "tesla", "geforce", "quadro"}


def _model_words(name: str) -> list[str]:
    return [w for w in name.lower().replace("-", " ").split() if w not in _OPTIONAL_WORDS]


def find_models(text: str) -> list[tuple[str, str]]:
    """(vendor, device id) of the models ``text`` names, case, dashes and words like NVIDIA or Instinct aside.

    The table of sized models is asked first, then NVIDIA's list; in each, an exact name wins ('L4' is the L4, not
    the L40), then names that begin with the words given ('H20' is the H20, not the H200), then names that contain
    them ('A6000'), then the same with the last word given as the beginning of a word ('H100 SXM'). One result is a
    match; several are ambiguous (the caller lists them); none is no match.
    """
    wanted = _model_words(text)
    if not wanted:
        return []
    table = {known[0]: key for key, known in _MODELS.items()}
    listed = {name: (NVIDIA_VENDOR, device) for device, name in nvidia_lists.CURRENT.items()}
    size = len(wanted)

    def begins(words: list[str], whole: bool) -> bool:  # the last word given may be the beginning of one: 'SXM'
        return (
            len(words) >= size
            and words[: size - 1] == wanted[:-1]
            and (words[size - 1] == wanted[-1] if whole else words[size - 1].startswith(wanted[-1]))
        )

    tests = (
        lambda words: words == wanted,
        lambda words: begins(words, whole=True),
        lambda words: any(begins(words[i:], whole=True) for i in range(len(words))),
        lambda words: begins(words, whole=False),
        lambda words: any(begins(words[i:], whole=False) for i in range(len(words))),
    )
    for names in (table, listed):
        for test in tests:
            found = sorted({key for name, key in names.items() if test(_model_words(name))})
            if found:
                return found
    return []


def normalise_id(value: str) -> str:
    """'0x2335', '2335', '0x233510DE' (nvidia-smi's device+vendor form) -> '0x2335'."""
    text = value.strip().lower().removeprefix("0x")
    if len(text) == 8:  # nvidia-smi pci_device_id: device id in the high 16 bits, vendor in the low
        text = text[:4]
    return "0x" + text.zfill(4)


# NVIDIA allocates device ids per chip, so a family's ids lie in ranges: the architecture of a device no table
# names. Ranges read from the ids of each family in NVIDIA's lists (nvidia_devices.py) and pci.ids.
NVIDIA_FAMILY_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0FC0, 0x103F, "kepler"),  # GK107, GK110/GK210
    (0x1180, 0x12BF, "kepler"),  # GK104, GK106, GK208
    (0x1340, 0x13FF, "maxwell"),  # GM107, GM108, GM204
    (0x1400, 0x143F, "maxwell"),  # GM206
    (0x1617, 0x167F, "maxwell"),  # GM204 mobile
    (0x1740, 0x17FF, "maxwell"),  # GM108, GM200
    (0x15F0, 0x15FF, "pascal"),  # GP100
    (0x1B00, 0x1D7F, "pascal-gp10x"),  # GP102 to GP108
    (0x1D80, 0x1DFF, "volta"),  # GV100
    (0x1E00, 0x1FFF, "turing"),  # TU102, TU104, TU106, TU117
    (0x2180, 0x21FF, "turing"),  # TU116
    (0x2080, 0x20FF, "ampere"),  # GA100
    (0x2200, 0x22FF, "ampere-ga10x"),  # GA102
    (0x2300, 0x23FF, "hopper"),  # GH100
    (0x2400, 0x25FF, "ampere-ga10x"),  # GA103 to GA107
    (0x2680, 0x28FF, "ada"),  # AD102 to AD107
    (0x2900, 0x29FF, "blackwell"),  # GB100, GB102
    (0x2B00, 0x2FFF, "blackwell-gb20x"),  # GB202 to GB207
)
# nvidia-smi's compute capability names the architecture exactly (Kepler and Maxwell span several).
ARCHITECTURE_OF_CAPABILITY = {
    facts["compute_capability"]: name for name, facts in reversed(ARCHITECTURES.items()) if facts["vendor"] == "nvidia"
}


def nvidia_family(device: str) -> str | None:
    """The architecture of an NVIDIA device id by its chip family's id range; None outside every range."""
    try:
        number = int(normalise_id(device), 16)
    except ValueError:
        return None
    return next((arch for low, high, arch in NVIDIA_FAMILY_RANGES if low <= number <= high), None)


def pci_ids_name(pci_ids: str | None, vendor: str, device: str) -> str | None:
    """A device's name from the text of a pci.ids file (Debian's pci.ids package), or None."""
    if not pci_ids:
        return None
    vendor_key, device_key = normalise_id(vendor)[2:], normalise_id(device)[2:]
    in_vendor = False
    for line in pci_ids.splitlines():
        if not line or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            if in_vendor:
                return None
            in_vendor = line[:4].lower() == vendor_key
        elif in_vendor and not line.startswith("\t\t") and line[1:5].lower() == device_key:
            return line[5:].strip() or None
    return None


def _open_module_support(device: str, architecture: str | None) -> str | None:
    """unsupported / supported / required by NVIDIA's open-modules list where the release lists the device."""
    rule = ARCHITECTURES[architecture]["open_kernel_module"] if architecture else None
    if device in nvidia_lists.OPEN_MODULES:
        return "required" if rule == "required" else "supported"
    if device in nvidia_lists.CURRENT or device in nvidia_lists.LEGACY:
        return "unsupported"
    return rule


def _unknown(brand: str, device: str, name: str | None) -> dict:
    return {
        "vendor": brand,
        "device_id": device,
        "model": name or f"unknown {brand} device {device}",
        "name_source": "pci.ids" if name else None,
        "architecture": None,
        "architecture_source": None,
        "compute_capability": None,
        "memory_gib": None,
        "open_kernel_module": None,
        "fp8": None,
        "newest_driver_branch": None,
        "known": False,
        "high_bandwidth_form": None,
    }


def describe_gpu(vendor: str, device: str, pci_name: str | None = None) -> dict:
    """Everything the rules know of one accelerator; what they cannot know is None, never a guess.

    ``known`` means the architecture is known (so the driver rules can decide); ``memory_gib`` stays None for a
    device the table does not size, until nvidia-smi reports it. ``pci_name`` (from the host's pci.ids) names a
    device no list knows. ``name_source`` says where the model name came from (None: nowhere).
    """
    vendor, device = normalise_id(vendor), normalise_id(device)
    brand = {NVIDIA_VENDOR: "nvidia", AMD_VENDOR: "amd"}.get(vendor, "unknown")
    known = _MODELS.get((vendor, device))
    listed_name = (
        (nvidia_lists.CURRENT.get(device) or nvidia_lists.LEGACY_NAMES.get(device)) if brand == "nvidia" else None
    )
    architecture = known[1] if known else nvidia_family(device) if brand == "nvidia" else None
    if architecture is None:
        facts = _unknown(brand, device, listed_name or pci_name)
        if listed_name:
            facts["name_source"] = "nvidia list"
    else:
        facts = {
            **architecture_facts(architecture),
            "device_id": device,
            "model": known[0] if known else (listed_name or pci_name or f"NVIDIA {architecture} device {device}"),
            "name_source": "table" if known else "nvidia list" if listed_name else "pci.ids" if pci_name else None,
            "architecture_source": "table" if known else "device id range",
            "memory_gib": known[2] if known else None,
            "newest_driver_branch": None,
            "known": True,
            "high_bandwidth_form": known[3] if known else None,
        }
    if brand == "nvidia":
        facts["open_kernel_module"] = _open_module_support(device, architecture)
        facts["newest_driver_branch"] = nvidia_lists.LEGACY.get(device) or (
            ARCHITECTURES[architecture].get("max_driver_branch") if architecture else None
        )
    return facts


def architecture_facts(architecture: str) -> dict:
    facts = ARCHITECTURES[architecture]
    return {
        "vendor": facts["vendor"],
        "architecture": architecture,
        "compute_capability": facts["compute_capability"],
        "open_kernel_module": facts["open_kernel_module"],
        "fp8": facts["fp8"],
    }


# nvidia-smi's product_architecture per architecture of ARCHITECTURES (its first entry is the family's default).
ARCHITECTURE_FAMILIES = {
    "Kepler": ("kepler",),
    "Maxwell": ("maxwell",),
    "Pascal": ("pascal", "pascal-gp10x"),
    "Volta": ("volta",),
    "Turing": ("turing",),
    "Ampere": ("ampere", "ampere-ga10x", "ampere-orin"),
    "Ada Lovelace": ("ada",),
    "Hopper": ("hopper",),
    "Blackwell": ("blackwell", "blackwell-gb20x"),
}


def with_driver_facts(
    gpu: dict,
    product_name: str | None,
    memory_mib: int | None,
    capability: str | None,
    product_architecture: str | None = None,
) -> dict:
    """The GPU as the loaded driver reports it: nvidia-smi's name, memory and compute capability win over the
    rules' (its capability, else its product architecture, names the architecture of a device the rules placed
    wrongly or not at all)."""
    updated = dict(gpu)
    if product_name:
        updated["product_name"] = product_name
        if gpu.get("architecture_source") != "table":
            updated["model"] = product_name
    if memory_mib:
        updated["memory_mib"] = memory_mib
        updated["memory_gib"] = round(memory_mib / 1024, 1)
    family = ARCHITECTURE_FAMILIES.get(product_architecture or "", ())
    if capability:
        updated["compute_capability"] = capability
    architecture = ARCHITECTURE_OF_CAPABILITY.get(capability or "") or (
        family[0] if family and gpu.get("architecture") not in family else None
    )
    if architecture and architecture != gpu.get("architecture"):
        updated.update(architecture_facts(architecture), architecture_source="nvidia-smi", known=True)
        updated["compute_capability"] = capability or updated["compute_capability"]
        updated["open_kernel_module"] = _open_module_support(gpu["device_id"], architecture)
    return updated


def describe_jetson(device_tree_model: str) -> dict | None:
    for marker, (model, architecture) in JETSON_MODELS.items():
        if marker in device_tree_model:
            return {
                "device_id": None,
                "model": model,
                "memory_gib": None,
                "known": True,
                "high_bandwidth_form": False,
                "integrated": True,
                **architecture_facts(architecture),
            }
    return None


def capability_at_least(have: str | None, need: str | None) -> bool:
    """Compare CUDA compute capabilities ('8.0' <= '9.0'); anything unknown or non-CUDA is not enough."""
    if need is None:
        return True
    if have is None or not have[0].isdigit():
        return False
    return tuple(int(p) for p in have.split(".")) >= tuple(int(p) for p in need.split("."))


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


def named(gpu: dict) -> str:
    """How a problem names a device: its model, vendor and device id, and where it sits."""
    where = f" at {gpu['pci_address']}" if gpu.get("pci_address") else ""
    return f"{gpu.get('model') or 'a GPU'} ({gpu.get('vendor')} device {gpu.get('device_id')}){where}"


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


# Model sizing -------------------------------------------------------------------------------------
# DeepSeek checkpoints the planner chooses from, best first. weights_gib: the checkpoint's size on disk
# (FP8: DeepSeek-V3/R1 ship 163 safetensors files, about 689 GB; BF16 distills: parameters x 2 bytes;
# AWQ: 4-bit weights plus BF16 embeddings, about 340 GiB). kv_bytes_per_token: KV cache for one token
# over all layers at BF16; for DeepSeek's multi-head latent attention (MLA) that is (512 latent + 64
# rope) x 61 layers x 2 bytes, kept whole on every tensor-parallel rank; for the distills it is
# 2 (K and V) x layers x KV heads x 128 x 2 bytes, split across ranks up to the number of KV heads.
CHECKPOINTS: dict[str, dict] = {
    "deepseek-r1-fp8": {
        "repo": "deepseek-ai/DeepSeek-R1",
        "params_b": 671,
        "weights_gib": 642,
        "precision": "fp8",
        "attention": "mla",
        "kv_bytes_per_token": 576 * 61 * 2,
        "kv_heads": None,
        "heads": 128,
        "max_context": 163840,
        "engine": "sglang",
    },
    "deepseek-r1-awq": {
        "repo": "cognitivecomputations/DeepSeek-R1-AWQ",
        "params_b": 671,
        "weights_gib": 340,
        "precision": "awq",
        "attention": "mla",
        "kv_bytes_per_token": 576 * 61 * 2,
        "kv_heads": None,
        "heads": 128,
        "max_context": 163840,
        "engine": "vllm",
    },
    "r1-distill-llama-70b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
        "params_b": 70.6,
        "weights_gib": 131.5,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 80 * 8 * 128 * 2,
        "kv_heads": 8,
        "heads": 64,
        "max_context": 131072,
        "engine": "vllm",
    },
    "r1-distill-qwen-32b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
        "params_b": 32.8,
        "weights_gib": 61.1,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 64 * 8 * 128 * 2,
        "kv_heads": 8,
        "heads": 40,
        "max_context": 131072,
        "engine": "vllm",
    },
    "r1-distill-qwen-14b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
        "params_b": 14.8,
        "weights_gib": 27.6,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 48 * 8 * 128 * 2,
        "kv_heads": 8,
        "heads": 40,
        "max_context": 131072,
        "engine": "vllm",
    },
    "r1-distill-qwen-7b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "params_b": 7.6,
        "weights_gib": 14.2,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 28 * 4 * 128 * 2,
        "kv_heads": 4,
        "heads": 28,
        "max_context": 131072,
        "engine": "vllm",
    },
    "r1-distill-llama-8b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
        "params_b": 8.0,
        "weights_gib": 15.0,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 32 * 8 * 128 * 2,
        "kv_heads": 8,
        "heads": 32,
        "max_context": 131072,
        "engine": "vllm",
    },
    "r1-distill-qwen-1.5b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
        "params_b": 1.8,
        "weights_gib": 3.3,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 28 * 2 * 128 * 2,
        "kv_heads": 2,
        "heads": 12,
        "max_context": 131072,
        "engine": "vllm",
    },
}
# DeepSeek-V3 shares R1's architecture and checkpoint layout.
CHECKPOINTS["deepseek-v3-fp8"] = {**CHECKPOINTS["deepseek-r1-fp8"], "repo": "deepseek-ai/DeepSeek-V3"}


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
        "ironserve/hardware.py (_MODELS, or its family to NVIDIA_FAMILY_RANGES), or regenerate "
        "ironserve/nvidia_devices.py from a newer driver's packages (tools/nvidia_device_list.py)"
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
