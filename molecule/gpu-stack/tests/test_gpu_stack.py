"""The GPU stage on a machine without a GPU (an image build): the driver from the offline mirror in the flavour
the rules choose (proprietary: Debian 13's open 550 module does not build for trixie's kernels), registered with
DKMS, held, nouveau blacklisted in the initramfs; Docker with compose v2 running
a container from a locally imported image, daemon.json merged with the site's own keys kept."""

from __future__ import annotations

import json
import os

from apt_logs import check_initramfs_deferred
from lab_ansible import ansible_playbook, role_playbook
from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
DRIVER = "550.163.01"

testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("nvidia_image")


def test_driver_installed_from_the_mirror_in_the_proprietary_flavour_and_held(host):
    record = json.loads(host.file("/var/lib/ironserve/nvidia-driver.json").content_string)
    assert (record["source"], record["branch"], record["flavour"]) == ("distribution", 550, "proprietary")
    assert record["image_build"] is True
    for package in ("nvidia-kernel-dkms", "nvidia-smi", "libcuda1", "nvidia-persistenced"):
        assert host.package(package).is_installed
        assert host.package(package).version.startswith(DRIVER)
    held = host.check_output("apt-mark showhold").split()
    assert {"nvidia-kernel-dkms", "nvidia-smi", "libcuda1", "nvidia-persistenced"} <= set(held)
    assert not host.package("nvidia-open-kernel-dkms").is_installed
    # Every package came from the bundle: the only source.
    policy = host.check_output("apt-cache policy nvidia-kernel-dkms")
    assert "http://10.0.2.100 ironserve/main" in policy


def test_a_driver_version_change_is_refused_unless_asked_for_and_nothing_changes(host, tmp_path):
    before = host.check_output("dpkg-query -W 'nvidia-*' libcuda1; apt-mark showhold")
    newer = [
        "nvidia-kernel-dkms=550.163.01-3",
        "nvidia-smi=550.163.01-3",
        "libcuda1=550.163.01-2",
        "nvidia-persistenced=550.163.01-1",
    ]
    result = ansible_playbook(
        INVENTORY,
        role_playbook(tmp_path, "nvidia_image", "nvidia_driver"),
        {"nvidia_driver_proprietary_packages": newer},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert (
        "the installed driver differs from the pinned one (nvidia-kernel-dkms 550.163.01-2 -> 550.163.01-3, "
        "nvidia-smi 550.163.01-2 -> 550.163.01-3)" in output
    ), output
    assert "-e nvidia_driver_allow_version_change=true" in output
    assert "changed=0" in output
    assert host.check_output("dpkg-query -W 'nvidia-*' libcuda1; apt-mark showhold") == before


def test_cuda_toolkit_refuses_a_version_the_distribution_does_not_have(host, tmp_path):
    result = ansible_playbook(
        INVENTORY, role_playbook(tmp_path, "nvidia_image", "cuda_toolkit"), {"cuda_toolkit_version": "12.8"}
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "This host needs CUDA 12.8, and the distribution has 12.4: set cuda_toolkit_source: cuda_repo" in output
    assert "changed=0" in output
    assert not host.package("nvidia-cuda-toolkit").is_installed


def test_dkms_has_the_module_registered(host):
    status = host.check_output("dkms status")
    assert f"nvidia-current/{DRIVER}: added" in status, status
    assert host.file(f"/usr/src/nvidia-current-{DRIVER}/dkms.conf").exists


def test_nouveau_is_blacklisted_also_in_the_initramfs(host):
    conf = host.file("/etc/modprobe.d/ironserve-blacklist-nouveau.conf").content_string
    assert "blacklist nouveau" in conf
    assert "blacklist nova_core" in conf
    kernel = host.check_output("uname -r")
    listing = host.check_output(f"lsinitramfs /boot/initrd.img-{kernel} | grep ironserve-blacklist-nouveau || true")
    assert "etc/modprobe.d/ironserve-blacklist-nouveau.conf" in listing


def test_the_drivers_install_left_the_initramfs_to_one_rebuild_after_it(host):
    # Without the deferral its one apt transaction rebuilt the initramfs three times (dpkg ran the trigger between
    # packages); now each request is recorded there and the handler's one rebuild makes them.
    initrd = check_initramfs_deferred(host, "nvidia-kernel-support")
    assert host.file(initrd).mtime > host.file("/var/lib/dpkg/info/nvidia-kernel-support.list").mtime
    # What the packages asked the initramfs to hold is in it: the driver's own nouveau blacklist.
    listing = host.check_output(f"lsinitramfs {initrd}").split()
    assert "etc/modprobe.d/nvidia-blacklists-nouveau.conf" in listing


def test_image_build_says_what_it_skipped(host):
    record = json.loads(host.file("/var/lib/ironserve/nvidia-driver.json").content_string)
    assert record["skipped"] == [
        "starting nvidia-persistenced (no GPU)",
        "nvidia-smi against the GPUs (no GPU)",
        "the DKMS build (nvidia_driver_build_module: false)",
    ]
    assert host.service("nvidia-persistenced").is_enabled


def test_docker_engine_and_compose_pinned_held_and_running(host):
    assert host.service("docker").is_running
    assert host.package("docker.io").version == "26.1.5+dfsg1-9+deb13u1+b1"
    assert {"docker.io", "docker-cli", "docker-compose", "containerd", "runc"} <= set(
        host.check_output("apt-mark showhold").split()
    )
    assert host.check_output("docker compose version --short").startswith("2.26")


def test_daemon_json_is_merged_and_keeps_the_sites_keys(host):
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["labels"] == ["site=ironserve-lab"]
    assert daemon["log-opts"] == {"max-size": "100m", "max-file": "5", "compress": "true"}
    assert daemon["default-ulimits"]["memlock"] == {"Name": "memlock", "Hard": -1, "Soft": -1}
    assert daemon["default-ulimits"]["stack"]["Soft"] == 67108864
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert "site=ironserve-lab" in info["Labels"]
    assert info["LoggingDriver"] == "json-file"


def test_docker_runs_a_container_from_a_locally_imported_image(host):
    # A rootfs of the host's own shell and C library: no registry, no network.
    host.check_output(
        "set -e; rm -rf /tmp/rootfs; mkdir -p /tmp/rootfs/bin /tmp/rootfs/lib64 /tmp/rootfs/lib/x86_64-linux-gnu;"
        " cp /usr/bin/dash /tmp/rootfs/bin/sh; cp /lib64/ld-linux-x86-64.so.2 /tmp/rootfs/lib64/;"
        " cp /lib/x86_64-linux-gnu/libc.so.6 /tmp/rootfs/lib/x86_64-linux-gnu/;"
        " tar -C /tmp/rootfs -c . | docker import - ironserve/lab-shell:1 >/dev/null"
    )
    # Only the shell is in the image: its builtins read what the container's first process is.
    out = host.check_output(
        "docker run --rm ironserve/lab-shell:1 /bin/sh -c 'read comm < /proc/1/comm; echo hello from $comm'"
    )
    assert out == "hello from sh"
    limits = host.check_output("docker run --rm ironserve/lab-shell:1 /bin/sh -c 'ulimit -l; ulimit -s'")
    assert limits.split() == ["unlimited", "65536"]
