"""The suite's one real golden image (make golden-image): built by ``ironserve image build`` from the lab's
base image and bundle, then checked as a site would receive it, and booted on its own kernel and initramfs
without anything of the lab's (no seed, no key on the command line) to multi-user.target with sshd started.

Not collected by ``make unit`` (no test_ prefix): it needs the image that make golden-image builds first,
named by IRONSERVE_GOLDEN_IMAGE (its stages in IRONSERVE_GOLDEN_STAGES, default base).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ironserve import golden_image, paths, stages
from ironserve.lab import vm

IMAGE = Path(os.environ.get("IRONSERVE_GOLDEN_IMAGE", "artifacts/golden-image"))
STAGES = os.environ.get("IRONSERVE_GOLDEN_STAGES", "base").split(",")
BOOT_TIMEOUT = 300.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def record() -> dict:
    if not (IMAGE / "image.json").exists():
        pytest.fail(f"no golden image in {IMAGE}: run make golden-image (it builds one, then runs this)")
    return json.loads((IMAGE / "image.json").read_text())


@pytest.fixture(scope="module")
def root_fs(record, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("golden") / "rootfs.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(IMAGE / "rootfs.qcow2"), str(raw)], check=True)
    return raw


def test_the_record_says_what_the_image_holds_and_what_is_left(record):
    site = [stage.name for stage in stages.from_site(paths.REPO_ROOT / "site.yml")]
    assert record["stages"] == STAGES
    assert record["left_for_first_boot"] == [name for name in site if name not in STAGES]
    assert record["image_build"] is True
    if "gpu" in STAGES:
        assert "nvidia-smi against the GPUs (no GPU)" in record["skipped"]["gpu"]
    for name, entry in record["files"].items():
        content = (IMAGE / name).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], name
        assert len(content) == entry["bytes"], name


def test_the_disk_stands_alone(record):
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(IMAGE / "rootfs.qcow2")], capture_output=True, check=True
        ).stdout
    )
    assert "backing-filename" not in info
    subprocess.run(["qemu-img", "check", str(IMAGE / "rootfs.qcow2")], capture_output=True, check=True)


def test_the_base_stage_is_in_it_and_the_lab_is_not(root_fs):
    status = golden_image.debugfs(root_fs, "cat /var/lib/dpkg/status")
    installed = {
        block.split("\n", 1)[0].removeprefix("Package: ")
        for block in status.split("\n\n")
        if "Status: install ok installed" in block
    }
    baseline = yaml.safe_load((paths.REPO_ROOT / "roles/host_baseline/vars/Debian.yml").read_text())
    assert set(baseline["host_baseline_packages"]) <= installed
    assert "Types: deb" in golden_image.debugfs(root_fs, "cat /etc/apt/sources.list.d/ironserve.sources")
    for path in golden_image.LAB_ONLY_FILES:
        assert golden_image.debugfs(root_fs, f"stat {path}") == "", path
    assert golden_image.debugfs(root_fs, "cat /etc/fstab") == golden_image.FSTAB
    assert golden_image.debugfs(root_fs, "cat /etc/machine-id").strip() == ""
    assert golden_image.debugfs(root_fs, "stat /etc/hostname") == ""


def test_it_boots_on_its_own_kernel_and_makes_its_own_host_keys(record, tmp_path):
    console = tmp_path / "console.log"
    argv = [
        "qemu-system-x86_64",
        "-machine",
        "q35",
        *vm.accelerator(),
        "-m",
        "1024",
        "-nodefaults",
        "-display",
        "none",
        "-nic",
        "none",
        "-serial",
        f"file:{console}",
        "-kernel",
        str(IMAGE / "vmlinuz"),
        "-initrd",
        str(IMAGE / "initrd.img"),
        "-append",
        # No getty on the console: while a unit runs on the console systemd prints no more status lines, so a
        # login prompt that comes first hides ssh.service's outcome (seen with the GPU stage's image).
        f"root=LABEL={golden_image.ROOT_LABEL} console=ttyS0 systemd.mask=serial-getty@ttyS0.service",
        # snapshot: the boot writes host keys and a machine id into a throwaway overlay, not the image
        "-drive",
        f"file={IMAGE / 'rootfs.qcow2'},if=virtio,format=qcow2,snapshot=on",
    ]
    qemu = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        text = ""
        while time.monotonic() < deadline and qemu.poll() is None:
            # systemd colours its status lines and cuts them to the console's width
            text = ANSI.sub("", console.read_text(errors="replace")) if console.exists() else ""
            if "Reached target multi-user.target" in text:
                break
            time.sleep(2)
        assert "Reached target multi-user.target" in text, (
            f"not booted to multi-user.target within {BOOT_TIMEOUT:.0f} s; console ends:\n{text[-3000:]}"
        )
        assert "Finished ironserve-host-keys.servi" in text, text[-3000:]
        assert "Started ssh.service" in text, text[-3000:]
        # no hostname of the builder's: the site's provisioning names the host
        assert "systemd[1]: Hostname set to <localhost>." in text, text[-3000:]
    finally:
        if qemu.poll() is None:
            os.killpg(qemu.pid, signal.SIGKILL)
        qemu.wait(timeout=30)
