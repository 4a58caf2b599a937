"""The probe's GPU section: accelerators and NVSwitches on the PCI bus, named by the GPU id rules, with what
nvidia-smi or rocm-smi report where the driver is loaded, and Jetson modules by device tree."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree

from .. import gpu_ids as rules
from .system import System, _int, _numa


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
