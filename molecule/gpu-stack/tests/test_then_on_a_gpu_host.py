"""The same machine, after its image build, as a GPU host's first run (#14): with stand-ins for the GPU on the PCI
bus, the NVIDIA kernel module (it loads only at boot, and only when a driver is installed), nvidia-smi and
nvidia-persistenced (molecule/gpu-stack/standin.yml), the GPU stage with image build off must reach the reboot
without needing a loaded driver, then start what needs it and check nvidia-smi against the probe; a driver that
does not load after the reboot is named with the GPU it leaves missing; a run after the reboot changes nothing.

Runs after test_gpu_stack.py (file order): it turns the machine into a GPU host for good."""

from __future__ import annotations

import os
from pathlib import Path

from lab_ansible import ansible_playbook
from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(__file__).resolve().parents[1]
GPU_STAGE = SCENARIO.parents[1] / "playbooks" / "gpu.yml"
# Off for this run: the toolkit comes from NVIDIA's repository, which the bench's offline bundle does not carry.
AS_A_GPU_HOST = {"ironserve_image_build": False, "container_runtime_nvidia_toolkit": False}

testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("nvidia_image")


def _boot_id(host) -> str:
    return host.file("/proc/sys/kernel/random/boot_id").content_string.strip()


def _standin(broken_module: bool) -> None:
    result = ansible_playbook(INVENTORY, SCENARIO / "standin.yml", {"standin_module_broken": broken_module})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_first_run_reaches_the_reboot_then_names_the_gpu_a_driver_that_did_not_load_leaves_missing(host):
    _standin(broken_module=True)
    assert host.run("nvidia-smi").rc == 9  # the stand-in answers like the real tool: no driver loaded yet
    before = _boot_id(host)

    result = ansible_playbook(INVENTORY, GPU_STAGE, AS_A_GPU_HOST, limit="nvidia_image", timeout=1500)
    output = result.stdout + result.stderr

    assert result.returncode != 0, output
    assert _boot_id(host) != before, "the stage never reached its reboot:\n" + output[-4000:]
    assert "the NVIDIA driver did not load after the reboot" in output, output[-4000:]
    assert "H200 SXM 141GB at 0000:00:00.0" in output, output[-4000:]
    assert "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver" in output


def test_then_with_a_driver_that_loads_the_run_reboots_and_starts_what_needs_the_driver(host):
    _standin(broken_module=False)
    before = _boot_id(host)

    result = ansible_playbook(INVENTORY, GPU_STAGE, AS_A_GPU_HOST, limit="nvidia_image", timeout=1500)
    output = result.stdout + result.stderr

    assert result.returncode == 0, output[-6000:]
    assert _boot_id(host) != before, "the driver was not loaded, yet the stage did not reboot:\n" + output[-4000:]
    assert "nvidia-smi sees all 1 GPU(s) the probe found" in output, output[-4000:]
    assert host.service("nvidia-persistenced").is_running
    assert host.check_output("nvidia-smi --query-gpu=pci.bus_id,name --format=csv,noheader") == (
        "00000000:00:00.0, NVIDIA H200"
    )


def test_and_a_run_after_that_changes_nothing_and_does_not_reboot(host):
    before = _boot_id(host)

    result = ansible_playbook(INVENTORY, GPU_STAGE, AS_A_GPU_HOST, limit="nvidia_image", timeout=900)
    output = result.stdout + result.stderr

    assert result.returncode == 0, output[-6000:]
    assert "changed=0" in output, output[-3000:]
    assert "failed=0" in output, output[-3000:]
    assert _boot_id(host) == before
