"""The NVIDIA driver's kernel module built by DKMS for the running kernel, with its headers, and held."""

from __future__ import annotations

import os

from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
DRIVER = "550.163.01"

testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("all")


def test_the_module_is_built_and_installed_for_the_running_kernel(host):
    kernel = host.check_output("uname -r")
    assert host.package(f"linux-headers-{kernel}").is_installed
    status = host.check_output("dkms status")
    assert f"nvidia-current-open/{DRIVER}, {kernel}, x86_64: installed" in status, status
    info = host.check_output(
        f"modinfo -k {kernel} -F version nvidia-current-open || modinfo -k {kernel} -F version nvidia"
    )
    assert info.splitlines()[0] == DRIVER


def test_the_driver_packages_are_held(host):
    assert {"nvidia-open-kernel-dkms", "nvidia-smi", "libcuda1"} <= set(host.check_output("apt-mark showhold").split())
