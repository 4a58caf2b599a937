"""The probe's GPU section on host trees shaped like real machines (fakehost.py) and recorded tool output:
PCI ids named by the GPU id rules, nvidia-smi and rocm-smi where the driver is loaded, Jetson by device tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakehost import FakeHost
from ironserve_target.probe import gpus


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path)


NVIDIA_SMI_HGX = (Path(__file__).parent / "fixtures/nvidia-smi/hgx-h100-8gpu.xml").read_text()
HGX_BUSES = ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]


def _hgx(host: FakeHost, with_driver: bool) -> None:
    for index, bus in enumerate(HGX_BUSES):
        host.pci(
            ["0000:00:01.0", f"0000:{bus}:00.0"],
            "0x10de",
            "0x2330",
            "0x030200",
            numa=index // 4,
            driver="nvidia" if with_driver else "",
        )
    for index in range(4):
        host.pci(["0000:00:02.0", f"0000:{0xC0 + index:02x}:00.0"], "0x10de", "0x22a3", "0x068000", numa=1)
    if with_driver:
        host.commands["nvidia-smi -q -x"] = (0, NVIDIA_SMI_HGX)


def test_hgx_board_without_driver_comes_from_pci(host):
    _hgx(host, with_driver=False)
    system = host.system()
    gpu = gpus.probe_gpus(system)
    assert gpu["count"] == 8
    assert gpu["models"] == ["H100 SXM5 80GB"]
    assert gpu["nvswitch"] is True
    assert [s["model"] for s in gpu["nvswitches"]] == ["H100 NVSwitch (gen 3)"] * 4
    first = gpu["gpus"][0]
    assert first["pci_address"] == "0000:18:00.0"
    assert (first["architecture"], first["compute_capability"], first["memory_gib"]) == ("hopper", "9.0", 80)
    assert (first["open_kernel_module"], first["fp8"], first["source"]) == ("supported", True, "sysfs")
    assert [g["numa_node"] for g in gpu["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert gpu["driver_loaded"] is False
    assert first["mig_mode"] is None
    assert any("nvidia-smi absent" in item for item in system.unknown)


def test_hgx_board_with_driver_adds_nvidia_smi_facts(host):
    _hgx(host, with_driver=True)
    system = host.system()
    gpu = gpus.probe_gpus(system)
    assert gpu["driver_loaded"] is True
    assert (gpu["driver_version"], gpu["cuda_version"]) == ("580.95.05", "13.0")
    for index, entry in enumerate(gpu["gpus"]):
        assert entry["source"] == "nvidia-smi"
        assert (entry["mig_mode"], entry["ecc_mode"], entry["memory_mib"]) == ("Disabled", "Enabled", 81559)
        assert entry["uuid"].startswith(f"GPU-{index:08x}")
        assert entry["kernel_driver"] == "nvidia"
    assert system.unknown == []


def test_a100_pcie_without_nvswitch_and_an_unknown_part(host):
    for index in range(4):
        host.pci(["0000:00:01.0", f"0000:{0x30 + index:02x}:00.0"], "0x10de", "0x20b5", "0x030200", numa=0)
    host.pci(["0000:00:01.0", "0000:40:00.0"], "0x10de", "0x9999", "0x030200", numa=0)
    gpu = gpus.probe_gpus(host.system())
    assert gpu["count"] == 5
    assert gpu["nvswitch"] is False
    assert gpu["models"] == ["A100 PCIe 80GB", "unknown nvidia device 0x9999"]
    unknown = gpu["gpus"][-1]
    assert unknown["known"] is False
    assert unknown["architecture"] is None


def test_amd_instinct_is_recognised_and_amd_graphics_is_not_a_gpu(host):
    for index in range(2):
        host.pci(["0000:00:01.0", f"0000:{0x50 + index:02x}:00.0"], "0x1002", "0x740c", "0x038000", numa=0)
    host.pci(["0000:00:08.0"], "0x1002", "0x1638", "0x030000", numa=0)  # an APU's display controller
    system = host.system()
    gpu = gpus.probe_gpus(system)
    assert gpu["models"] == ["Instinct MI250X/MI250"]
    assert gpu["gpus"][0]["architecture"] == "cdna2"
    assert gpu["gpus"][0]["fp8"] is False
    assert "AMD driver facts (rocm-smi absent or failing)" in system.unknown
    host.commands[" ".join(gpus.ROCM_SMI)] = (0, '{"system": {"Driver version": "6.10.5"}}')
    assert {g["driver_version"] for g in gpus.probe_gpus(host.system())["gpus"]} == {"6.10.5"}


def test_jetson_from_device_tree(host):
    host.write("/proc/device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit\x00")
    gpu = gpus.probe_gpus(host.system())
    assert gpu["count"] == 1
    assert gpu["gpus"][0]["model"] == "Jetson AGX Orin"
    assert gpu["gpus"][0]["compute_capability"] == "8.7"
    assert gpu["gpus"][0]["integrated"] is True
