"""The NVIDIA driver's kernel module built by DKMS for the running kernel, with its headers, and held: the
proprietary flavour, the one of Debian 13's two that builds for its current kernel."""

from __future__ import annotations

import json
import os

from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
DRIVER = "550.163.01"

testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("all")


def test_the_module_is_built_and_installed_for_the_running_kernel(host):
    kernel = host.check_output("uname -r")
    assert host.package(f"linux-headers-{kernel}").is_installed
    status = host.check_output("dkms status")
    assert f"nvidia-current/{DRIVER}, {kernel}, x86_64: installed" in status, status
    assert host.check_output(f"modinfo -k {kernel} -F version nvidia-current") == DRIVER
    record = json.loads(host.file("/var/lib/ironserve/nvidia-driver.json").content_string)
    assert (record["flavour"], record["skipped"]) == (
        "proprietary",
        ["starting nvidia-persistenced (no GPU)", "nvidia-smi against the GPUs (no GPU)"],
    )


def test_the_driver_packages_are_held(host):
    assert {"nvidia-kernel-dkms", "nvidia-smi", "libcuda1"} <= set(host.check_output("apt-mark showhold").split())
    assert not host.package("nvidia-open-kernel-dkms").is_installed


def test_nouveau_is_blacklisted_in_the_rebuilt_initramfs(host):
    kernel = host.check_output("uname -r")
    listing = host.check_output(f"lsinitramfs /boot/initrd.img-{kernel}")
    assert "etc/modprobe.d/ironserve-blacklist-nouveau.conf" in listing
