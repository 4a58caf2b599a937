"""The GPU stage on an AMD Instinct golden image (the batch profile, no GPU): Debian's amdgpu firmware and rocm-smi
from the offline mirror, pinned and held, the device facts the engine containers need recorded, and no NVIDIA
driver or container toolkit."""

from __future__ import annotations

import json
import os

from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]

testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("amd_image")


def test_amd_firmware_and_rocm_smi_from_the_mirror_pinned_and_held(host):
    assert host.package("firmware-amd-graphics").version == "20250410-2"
    assert host.package("rocm-smi").version == "6.1.2-1"
    assert {"firmware-amd-graphics", "rocm-smi"} <= set(host.check_output("apt-mark showhold").split())
    assert "http://10.0.2.100 ironserve/" in host.check_output("apt-cache policy rocm-smi")
    # Firmware for every Instinct generation the profile names: MI250X (Aldebaran) and MI300 (gc 9.4.3).
    assert host.file("/usr/lib/firmware/amdgpu").is_directory
    assert host.run("ls /usr/lib/firmware/amdgpu/aldebaran_* /usr/lib/firmware/amdgpu/gc_9_4_3_*").rc == 0


def test_rocm_smi_runs_and_says_the_driver_is_not_there(host):
    # The real tool on a machine without AMD GPUs: its Python and library load, and it stops at the driver check
    # with its own message (what the probe then notes as "rocm-smi absent or failing").
    result = host.run("rocm-smi --showproductname --json")
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert "Driver not initialized (amdgpu not found in modules)" in output, output


def test_the_device_facts_for_the_engine_containers_are_recorded(host):
    record = json.loads(host.file("/var/lib/ironserve/amd-gpu.json").content_string)
    assert record["image_build"] is True
    assert record["gpus"] == []
    assert record["device_nodes"] == ["/dev/kfd", "/dev/dri"]
    for group in ("render", "video"):
        assert record["groups"][group] == host.group(group).gid


def test_no_nvidia_stack_on_an_amd_host(host):
    assert not host.package("nvidia-kernel-dkms").is_installed
    assert not host.package("nvidia-open-kernel-dkms").is_installed
    assert not host.file("/etc/modprobe.d/ironserve-blacklist-nouveau.conf").exists
    assert host.service("docker").is_running
