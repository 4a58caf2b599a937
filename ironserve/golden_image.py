"""Golden images: a host's disk after the stages that do not depend on which host it is, for sites that deploy
images (PXE, MAAS, Ironic) and run the remaining stages on first boot.

The image is built the way the bench builds a machine layer (ironserve/lab/layers.py): a lab machine booted
from the base image (Debian 13, the offline bundle as its only package source) converges the chosen stages in
image-build mode (``ironserve_image_build: true``: no GPU on the builder), its identity is removed, it powers off,
and its disk is kept under a key of everything that shaped it. A build whose content a bench layer already holds
reuses it. The export flattens it into a standalone root-filesystem image with its kernel and initramfs beside it
and writes ``image.json``: what it contains, what image-build mode skipped, what is left for first boot.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from ironserve import paths, stages
from ironserve.bundle.images import sha256_file
from ironserve.commands import run_step
from ironserve.lab.image import LAB_INITRAMFS_CONF, LAB_ONLY_FILES, ROOT_LABEL

RECORD_FORMAT = 1
# Stages whose work is the same on every host of a site: the only ones an image may hold.
IMAGE_STAGES = ("base", "gpu")
# Why the others are left for first boot; each names what it would bake into every host from the builder.
HOST_SPECIFIC = {
    "preflight": "it checks this host's hardware against the inventory; the builder is not the host",
    "network": "it writes the host's own addresses and matches its NICs by MAC address",
    "network_check": "it measures the host's own links",
    "storage": "it builds RAID and file systems on the host's own disks",
    "inference": "it deploys onto the host's GPUs and hot tier, with the site's keys",
    "frontend": "it floats the site's service address between its own hosts, with the site's certificate",
}
FSTAB = f"LABEL={ROOT_LABEL} / ext4 defaults,noatime 0 1\n"
# Debian makes SSH host keys when openssh-server is installed, not at boot; the lab's seed did it per machine.
HOST_KEYS_UNIT_PATH = "/etc/systemd/system/ironserve-host-keys.service"
HOST_KEYS_UNIT = """[Unit]
Description=ironserve: make this host's own SSH host keys on its first boot
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""
# Records the stages leave in the image, read back into image.json.
STATE_RECORDS = {"gpu": "/var/lib/ironserve/nvidia-driver.json"}


class GoldenImageError(ValueError):
    """The stages asked for cannot make a golden image; the message says why and what to do."""


class ExportError(RuntimeError):
    """A step of the export failed; the message names it and the tool's own words."""


def choose_stages(requested: list[str], site: Path) -> list[str]:
    """The requested stages in site.yml's order, refusing unknown and host-specific ones."""
    known = [stage.name for stage in stages.from_site(site)]
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise GoldenImageError(f"--stages: unknown stage(s) {', '.join(unknown)}; site.yml has {', '.join(known)}")
    refused = [name for name in requested if name not in IMAGE_STAGES]
    if refused:
        reasons = "; ".join(f"{name}: {HOST_SPECIFIC.get(name, 'not a host-agnostic stage')}" for name in refused)
        raise GoldenImageError(
            f"--stages: {', '.join(refused)} cannot go into a golden image ({reasons}). An image holds "
            f"{', '.join(IMAGE_STAGES)}; run the others on first boot (ironserve run --inventory YOUR_SITE)"
        )
    if not requested:
        raise GoldenImageError(f"--stages: name at least one of {', '.join(IMAGE_STAGES)}")
    return [name for name in known if name in requested]


def _run(step: str, argv: list[str]) -> subprocess.CompletedProcess:
    return run_step(f"image export, {step}", argv, ExportError)


def debugfs(raw: Path, request: str, write: bool = False) -> str:
    return _run(request, ["debugfs", *(["-w"] if write else []), "-R", request, str(raw)]).stdout


def _kernel(raw: Path) -> str:
    # debugfs ls -p: /inode/mode/uid/gid/name/size/ per entry
    names = [line.split("/")[5] for line in debugfs(raw, "ls -p /boot").splitlines() if line.count("/") >= 6]
    versions = [n.removeprefix("vmlinuz-") for n in names if n.startswith("vmlinuz-")]
    versions = [v for v in versions if f"initrd.img-{v}" in names]
    # The base image has one kernel and no stage installs another; two would leave the boot choice to guesswork.
    if len(versions) != 1:
        raise ExportError(
            f"image export: the image's /boot must hold exactly one kernel with its initramfs; it has "
            f"{', '.join(versions) or 'none'} (files: {', '.join(names)})"
        )
    return versions[0]


def export(disk: Path, output: Path, record: dict) -> dict:
    """Flatten ``disk`` into ``output``: rootfs.qcow2, vmlinuz, initrd.img and image.json (returned)."""
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output, prefix=".export-") as scratch:
        raw = Path(scratch) / "rootfs.raw"
        _run("flatten", ["qemu-img", "convert", "-O", "raw", str(disk), str(raw)])
        identity = {
            "machine_id_empty": debugfs(raw, "cat /etc/machine-id").strip() == "",
            "host_keys": [n for n in debugfs(raw, "ls /etc/ssh").split() if n.startswith("ssh_host_")],
            "root_authorized_keys": bool(debugfs(raw, "stat /root/.ssh/authorized_keys").strip()),
        }
        if not identity["machine_id_empty"] or identity["host_keys"] or identity["root_authorized_keys"]:
            raise ExportError(f"image export: the builder's identity is still in the image: {identity}")
        # /etc/hostname: the builder's name; without the file the host takes the one its provisioning gives.
        for path in (*LAB_ONLY_FILES, "/etc/fstab", "/etc/hostname"):
            if debugfs(raw, f"stat {path}").strip():
                debugfs(raw, f"rm {path}", write=True)
        for content, path in ((FSTAB, "/etc/fstab"), (HOST_KEYS_UNIT, HOST_KEYS_UNIT_PATH)):
            local = Path(scratch) / Path(path).name
            local.write_text(content)
            local.chmod(0o644)
            debugfs(raw, f"write {local} {path}", write=True)
        wants = "/etc/systemd/system/multi-user.target.wants/" + Path(HOST_KEYS_UNIT_PATH).name
        debugfs(raw, f"symlink {wants} {HOST_KEYS_UNIT_PATH}", write=True)
        kernel = _kernel(raw)
        for source, name in ((f"/boot/vmlinuz-{kernel}", "vmlinuz"), (f"/boot/initrd.img-{kernel}", "initrd.img")):
            debugfs(raw, f"dump {source} {Path(scratch) / name}")
            shutil.move(Path(scratch) / name, output / name)
        skipped = {}
        for stage, path in STATE_RECORDS.items():
            if stage in record["stages"]:
                text = debugfs(raw, f"cat {path}")
                skipped[stage] = json.loads(text).get("skipped", []) if text.strip() else ["(no record found)"]
        _run("convert", ["qemu-img", "convert", "-O", "qcow2", str(raw), str(output / "rootfs.qcow2")])
    files = {
        name: {"sha256": sha256_file(output / name), "bytes": (output / name).stat().st_size}
        for name in ("rootfs.qcow2", "vmlinuz", "initrd.img")
    }
    record = {
        **record,
        "format": RECORD_FORMAT,
        "kernel": kernel,
        "skipped": skipped,
        "identity": "none: machine-id (systemd) and SSH host keys (ironserve-host-keys.service) are made at first "
        "boot; root has no SSH key (add yours with your provisioning tool: MAAS, Ironic's config drive, a PXE "
        "overlay)",
        "boot": f"root file system (ext4, label {ROOT_LABEL}, no partition table, no boot loader) with its kernel "
        f"and initramfs beside it: an Ironic partition image, or PXE with root=LABEL={ROOT_LABEL}",
        "files": files,
    }
    (output / "image.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def export_if_unrebuilt(disk: Path, output: Path, record: dict, base_initrd: Path) -> dict | None:
    """Export ``disk`` when its initramfs is still ``base_initrd`` (no stage rebuilt it); else None."""
    exported = export(disk, output, record)
    return exported if exported["files"]["initrd.img"]["sha256"] == sha256_file(base_initrd) else None


def build(requested: list[str], output: Path, site: Path = paths.REPO_ROOT / "site.yml", log=print) -> dict:
    """Build (or reuse) the machine disk after ``requested`` stages in image-build mode and export it."""
    from ironserve.bundle.build import build_for_roles
    from ironserve.lab import image as base_image
    from ironserve.lab import layers
    from ironserve.lab.lab import LAB_GROUP_VARS

    chosen = choose_stages(requested, site)
    base = base_image.build(log=log)
    bundle = build_for_roles(log=log)
    identity = layers.bundle_identity(bundle)
    base_key = base.folder.name
    # Without the lab's initramfs setting first: an initramfs a stage rebuilds must boot any host, not the builder.
    layer = layers.Layer(
        name="image-" + "-".join(chosen),
        stages=tuple(chosen),
        why="golden image",
        prepare=f"rm -f {LAB_INITRAMFS_CONF}",
    )
    left = [stage.name for stage in stages.from_site(site) if stage.name not in chosen]
    record = {
        "stages": chosen,
        "left_for_first_boot": left,
        # what the builder's inventory set (the lab's group variables), not what this code hopes
        "image_build": bool(yaml.safe_load(LAB_GROUP_VARS.read_text()).get("ironserve_image_build")),
        "base_image": base_key,
        "bundle": identity,
        "package_source": "the offline bundle, at the lab's address http://10.0.2.100/: the base stage points it "
        "at your site's package_source_* on first boot",
    }
    # The bench may hold a layer of the same stages, built without the prepare step (the suite's `base`). It
    # serves when no stage rebuilt the initramfs in it: its initrd is then still the base image's own, made before
    # the lab's setting existed. One export tells, and saves the build.
    plain = layers.Layer(name=layer.name, stages=layer.stages, why=layer.why)
    plain_key = layers.layer_key(plain, base_key, identity)
    reused = layers.find_by_key(plain_key)
    if reused is not None:
        log(f"exporting {reused.folder.name}, a cached layer of the same stages")
        reused_name = reused.folder.name.removesuffix(f"-{plain_key}")
        exported = export_if_unrebuilt(
            reused.disk, output, {**record, "layer": {"name": reused_name, "key": plain_key}}, base.initrd
        )
        if exported is not None:
            return exported
        log(f"{reused.folder.name} has an initramfs rebuilt under the lab's setting: building without it")
    key = layers.layer_key(layer, base_key, identity)
    built = layers.ensure_layer(layer, key, base.disk, bundle, log=log)
    log(f"exporting {built.disk.parent.name} to {output}")
    return export(built.disk, output, {**record, "layer": {"name": layer.name, "key": key}})
