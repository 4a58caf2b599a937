"""Golden images: only host-agnostic stages, refused before any build; the export strips the lab's own files
and identity, carries the kernel and initramfs beside the root file system and records what was skipped."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ironserve import cli, golden_image

KERNEL = "6.12.118+deb13-amd64"
SITE = Path(__file__).resolve().parent.parent / "site.yml"
needs_tools = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("mke2fs", "debugfs", "qemu-img")),
    reason="needs e2fsprogs and qemu-utils (make setup installs them)",
)


def test_stages_are_put_in_site_order():
    assert golden_image.choose_stages(["gpu", "base"], SITE) == ["base", "gpu"]


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (["base", "network"], "network cannot go into a golden image (network: it writes the host's own addresses"),
        (["storage"], "storage: it builds RAID and file systems on the host's own disks"),
        (["base", "bogus"], "unknown stage(s) bogus; site.yml has preflight, base, network"),
        ([], "name at least one of base, gpu"),
    ],
)
def test_stages_that_cannot_make_an_image_are_refused(stages, message):
    with pytest.raises(golden_image.GoldenImageError) as refused:
        golden_image.choose_stages(stages, SITE)
    assert message in str(refused.value)


def test_the_command_refuses_before_building_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path / "home"))
    output = tmp_path / "out"
    assert cli.main(["image", "build", "--stages", "base,network", "--output", str(output)]) == cli.EXIT_BAD_INPUT
    assert "network cannot go into a golden image" in capsys.readouterr().err
    assert not output.exists()
    assert not (tmp_path / "home").exists()


def _builder_disk(tmp_path: Path, identity_left: bool = False) -> Path:
    """A root file system shaped like a layer's: lab seed files, no identity, a driver record, one kernel."""
    root = tmp_path / "root"
    for folder in (
        "boot",
        "etc/ssh/sshd_config.d",
        "etc/systemd/system/multi-user.target.wants",
        "usr/local/sbin",
        "etc/initramfs-tools/conf.d",
        "var/lib/ironserve",
        "root",
    ):
        (root / folder).mkdir(parents=True)
    (root / f"boot/vmlinuz-{KERNEL}").write_bytes(b"kernel")
    (root / f"boot/initrd.img-{KERNEL}").write_bytes(b"initramfs")
    (root / "etc/machine-id").write_text("")
    (root / "etc/fstab").write_text("/dev/vda / ext4 defaults,noatime 0 1\n")
    (root / "etc/hostname").write_text("layer-image-base\n")
    for path in golden_image.LAB_ONLY_FILES:
        (root / path.lstrip("/")).write_text("lab\n")
    (root / "var/lib/ironserve/nvidia-driver.json").write_text(json.dumps({"skipped": ["nvidia-smi (no GPU)"]}))
    if identity_left:
        (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret\n")
    raw = tmp_path / "disk.raw"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", "ironserve-root", "-d", str(root), str(raw), "64M"], check=True)
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(disk)], check=True)
    return disk


@needs_tools
def test_the_export_strips_the_lab_and_records_what_it_holds(tmp_path):
    output = tmp_path / "image"
    record = golden_image.export(_builder_disk(tmp_path), output, {"stages": ["base", "gpu"]})
    assert sorted(p.name for p in output.iterdir()) == ["image.json", "initrd.img", "rootfs.qcow2", "vmlinuz"]
    assert (output / "vmlinuz").read_bytes() == b"kernel"
    assert (output / "initrd.img").read_bytes() == b"initramfs"
    assert json.loads((output / "image.json").read_text()) == record
    assert record["kernel"] == KERNEL
    assert record["skipped"] == {"gpu": ["nvidia-smi (no GPU)"]}
    for name, entry in record["files"].items():
        assert hashlib.sha256((output / name).read_bytes()).hexdigest() == entry["sha256"]
    raw = tmp_path / "check.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(output / "rootfs.qcow2"), str(raw)], check=True)
    for path in golden_image.LAB_ONLY_FILES:
        assert (
            "File not found"
            in subprocess.run(
                ["debugfs", "-R", f"stat {path}", str(raw)], capture_output=True, text=True, check=False
            ).stderr
        )
    fstab = subprocess.run(["debugfs", "-R", "cat /etc/fstab", str(raw)], capture_output=True, text=True, check=True)
    assert fstab.stdout == "LABEL=ironserve-root / ext4 defaults,noatime 0 1\n"
    unit = subprocess.run(
        ["debugfs", "-R", f"cat {golden_image.HOST_KEYS_UNIT_PATH}", str(raw)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "ExecStart=/usr/bin/ssh-keygen -A" in unit.stdout
    wanted = subprocess.run(
        ["debugfs", "-R", "stat /etc/systemd/system/multi-user.target.wants/ironserve-host-keys.service", str(raw)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f'Fast link dest: "{golden_image.HOST_KEYS_UNIT_PATH}"' in wanted.stdout


@needs_tools
def test_an_image_that_still_has_the_builders_identity_is_refused(tmp_path):
    with pytest.raises(golden_image.ExportError) as refused:
        golden_image.export(_builder_disk(tmp_path, identity_left=True), tmp_path / "image", {"stages": ["base"]})
    assert "'host_keys': ['ssh_host_ed25519_key']" in str(refused.value)
    assert list((tmp_path / "image").iterdir()) == []


@needs_tools
def test_a_cached_layer_serves_only_with_the_base_images_own_initramfs(tmp_path):
    disk = _builder_disk(tmp_path)
    same, other = tmp_path / "same.img", tmp_path / "other.img"
    same.write_bytes(b"initramfs")
    other.write_bytes(b"initramfs rebuilt with MODULES=dep")
    record = golden_image.export_if_unrebuilt(disk, tmp_path / "a", {"stages": ["base"]}, same)
    assert record is not None
    assert record["stages"] == ["base"]
    assert golden_image.export_if_unrebuilt(disk, tmp_path / "b", {"stages": ["base"]}, other) is None
