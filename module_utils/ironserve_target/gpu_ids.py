"""GPU ids and descriptions: accelerator models by PCI id, their architecture and what each architecture can do.

Runs on the target (the probe, through Ansible's module_utils) and on the controller (the driver policy, preflight,
the planner and the CLI import it as ``ironserve_target.gpu_ids``): stdlib only, and nothing from the ironserve
package.

Which NVIDIA devices a driver release drives, their names and which the open kernel modules drive come from
NVIDIA's own lists in the bundle's driver packages (nvidia_devices.py beside this file, written by
tools/nvidia_device_list.py). The table below holds the SKUs the planner sizes: what those lists lack (memory, form
factor) and, for them, a name more precise than NVIDIA's ("H100 SXM5 80GB" for "NVIDIA H100 80GB HBM3") and the
architecture. A device no table names gets its architecture from its chip family's device-id range, and its name
from the host's pci.ids; with the driver loaded, nvidia-smi's name, memory and compute capability win (the probe).
PCI device ids of the table are from the PCI ID Repository (pci.ids, Debian package pci.ids 0.0~2025.06.09);
memory sizes and compute capabilities from the vendors' data sheets and CUDA's compute capability table.
"""

from __future__ import annotations

from . import nvidia_devices as nvidia_lists

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


def named(gpu: dict) -> str:
    """How a problem names a device: its model, vendor and device id, and where it sits."""
    where = f" at {gpu['pci_address']}" if gpu.get("pci_address") else ""
    return f"{gpu.get('model') or 'a GPU'} ({gpu.get('vendor')} device {gpu.get('device_id')}){where}"
