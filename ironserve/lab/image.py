"""The lab's base image: a minimal Debian 13 root filesystem for direct kernel boot.

Built with mmdebstrap from the Debian archive, customised so that one image serves every lab machine
(identity, SSH key and NIC addresses come from the kernel command line at boot), and cached under a key
derived from everything that goes into it, so a machine builds it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ironserve import paths
from ironserve.commands import run_step
from ironserve.debian import SUITE, source_lines

BASE_PACKAGES = (
    "linux-image-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "kmod",
    "iproute2",
    "iputils-ping",
    "openssh-server",
    "python3",
    # In every standard Debian install; without it in the image, the first converge that installs it
    # rebuilds the initramfs under TCG (measured: +2 minutes per machine).
    "e2fsprogs",
)
ROOT_SIZE_GB = 6
ROOT_LABEL = "ironserve-root"
IMAGE_FORMAT_VERSION = 4  # bump when the build steps below change what the image contains

# The seed program and its unit, as files that shellcheck and systemd-analyze read (both hashed into image_key).
FILES = Path(__file__).resolve().parent / "files"
SEED_SCRIPT = (FILES / "ironserve-lab-seed").read_text()
SEED_UNIT = (FILES / "ironserve-lab-seed.service").read_text()


class ImageError(RuntimeError):
    """The base image could not be built; the message says which step and why."""


@dataclass(frozen=True)
class BaseImage:
    folder: Path

    @property
    def disk(self) -> Path:
        return self.folder / "rootfs.qcow2"

    @property
    def kernel(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.img"

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.json"


def image_key() -> str:
    """Everything that decides the image's content, hashed: a change to any of it builds a new image."""
    recipe = {
        "sources": source_lines(),
        "packages": sorted(BASE_PACKAGES),
        "seed": SEED_SCRIPT,
        "unit": SEED_UNIT,
        "root_size_gb": ROOT_SIZE_GB,
        "format": IMAGE_FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _run(step: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return run_step(step, argv, ImageError, **kwargs)


SEED_PATH = "/usr/local/sbin/ironserve-lab-seed"
SEED_UNIT_PATH = "/etc/systemd/system/ironserve-lab-seed.service"
LAB_INITRAMFS_CONF = "/etc/initramfs-tools/conf.d/ironserve-lab.conf"
LAB_SSHD_CONF = "/etc/ssh/sshd_config.d/ironserve-lab.conf"
# Files only lab machines need (a golden image made from this image leaves them out).
LAB_ONLY_FILES = (
    "/etc/systemd/system/multi-user.target.wants/ironserve-lab-seed.service",
    SEED_UNIT_PATH,
    SEED_PATH,
    LAB_INITRAMFS_CONF,
    LAB_SSHD_CONF,
)


def _customise(root: Path) -> None:
    seed = root / SEED_PATH.lstrip("/")
    seed.write_text(SEED_SCRIPT)
    seed.chmod(0o755)
    (root / SEED_UNIT_PATH.lstrip("/")).write_text(SEED_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit, target in (
        ("ironserve-lab-seed.service", "/etc/systemd/system/ironserve-lab-seed.service"),
        ("systemd-networkd.service", "/usr/lib/systemd/system/systemd-networkd.service"),
    ):
        link = wants / unit
        if not link.is_symlink():
            link.symlink_to(target)
    # No package source at all: hosts get one from the package_source role, pointing at the bundle.
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    for sources in (root / "etc/apt/sources.list.d").glob("*"):
        sources.unlink()
    # Timers that would take the dpkg lock in the middle of a converge.
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        masked = root / "etc/systemd/system" / timer
        masked.unlink(missing_ok=True)
        masked.symlink_to("/dev/null")
    # Each machine makes its own host keys and machine id on first boot.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    # mmdebstrap copies the build host's resolver; lab machines have none (nothing outside is reachable).
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text("# ironserve lab: no name service\n")
    (root / "etc/fstab").write_text("/dev/vda / ext4 defaults,noatime 0 1\n")
    # Lab machines boot the image's own kernel and initrd (direct kernel boot), never the initramfs a role
    # rebuilds in /boot, so only the rebuild's cost matters here: with the modules this machine needs rather
    # than most of the kernel's, one rebuild under TCG took 58 s instead of 121 s (measured; the GPU and storage
    # stages now rebuild it once each, library/ironserve_initramfs.py). Written after mmdebstrap: the image's own
    # initrd keeps them all.
    conf = root / LAB_INITRAMFS_CONF.lstrip("/")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("# ironserve lab: see ironserve/lab/image.py\nMODULES=dep\n")
    # Every connection to a QEMU machine comes from one address (user networking's host side, 10.0.2.2), so
    # OpenSSH's per-source penalties (on by default since 9.8) punish the bench itself: connection attempts that
    # time out while a TCG guest boots count as "noauth", and past 15 s of them sshd refuses the controller for up
    # to 10 minutes ("kex_exchange_identification: read: Connection reset by peer"; seen in CI after a reboot).
    sshd = root / LAB_SSHD_CONF.lstrip("/")
    sshd.parent.mkdir(parents=True, exist_ok=True)
    sshd.write_text("# ironserve lab: see ironserve/lab/image.py\nPerSourcePenalties no\n")


def build(force: bool = False, log=print) -> BaseImage:
    """Return the cached base image, building it first if this machine has none for the current recipe."""
    with paths.cache_lock("base-image"):
        return _build(force, log)


def _build(force: bool, log) -> BaseImage:
    key = image_key()
    image = BaseImage(paths.images_dir() / f"debian-{SUITE}-{key}")
    if image.manifest.exists() and not force:
        return image
    if os.geteuid() != 0:
        raise ImageError("building the lab image needs root (mmdebstrap --mode=root, mke2fs -d keeps owners)")
    work = image.folder.with_name(image.folder.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    root = work / "root"
    started = time.monotonic()
    log(f"building base image {image.folder.name} (Debian {SUITE}, {len(BASE_PACKAGES)} packages)")
    try:
        _run(
            "mmdebstrap",
            [
                "mmdebstrap",
                "--mode=root",
                "--variant=apt",
                "--include=" + ",".join(BASE_PACKAGES),
                SUITE,
                str(root),
                *source_lines(),
            ],
        )
        _customise(root)
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        initrds = sorted((root / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise ImageError("mmdebstrap produced no kernel or initrd in /boot")
        shutil.copy2(kernels[-1], work / "vmlinuz")
        shutil.copy2(initrds[-1], work / "initrd.img")
        packages = _run("package list", ["chroot", str(root), "dpkg-query", "-W", "-f", "${Package}=${Version}\n"])
        raw = work / "rootfs.raw"
        _run(
            "mke2fs",
            ["mke2fs", "-q", "-t", "ext4", "-L", ROOT_LABEL, "-d", str(root), str(raw), f"{ROOT_SIZE_GB}G"],
        )
        _run("qemu-img convert", ["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "rootfs.qcow2")])
        raw.unlink()
        shutil.rmtree(root)
        manifest = {
            "key": key,
            "suite": SUITE,
            "kernel": kernels[-1].name.removeprefix("vmlinuz-"),
            "packages": sorted(packages.stdout.split()),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(image.folder, ignore_errors=True)
    work.rename(image.folder)
    log(f"base image ready in {manifest['build_seconds']} s: {image.folder}")
    return image
