"""NVIDIA's own lists of the devices a driver release drives, read from the driver's Debian packages.

Two documents, both shipped in the bundle's packages of the driver: the driver's README (``nvidia-kernel-dkms``,
``/usr/share/doc/nvidia-kernel-dkms/README.txt.gz``), whose "Appendix A. Supported NVIDIA GPU Products" lists the
devices the release drives and, per legacy branch (470.xx, 390.xx, ...), the devices only that branch still drives;
and the open kernel modules' README (``nvidia-open-kernel-dkms``, ``README.md.gz``), whose "Compatible GPUs" table
lists the devices the open modules drive. ``tools/nvidia_device_list.py`` turns them into ``nvidia_devices.py``,
which the hardware rules read on the controller and on the target. Controller side only.
"""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import tarfile
from pathlib import Path

_ROW = re.compile(r"^\s*(?P<name>\S.*?\S)\s{2,}(?P<device>[0-9A-F]{4})(?P<subsystem> [0-9A-F]{4} [0-9A-F]{4})?(?:\s|$)")
_OPEN_ROW = re.compile(r"^\|\s*(?P<name>\S.*?\S)\s*\|\s*(?P<device>[0-9A-F]{4})(?:\s+[0-9A-F]{4}\s+[0-9A-F]{4})?\s*\|")
_LEGACY = re.compile(r"^The (?P<branch>\d+)\.\S+ driver supports the following set of GPUs:")


def parse_driver_readme(text: str) -> tuple[dict[str, str], dict[str, int], dict[str, str]]:
    """(device id -> product name for the devices this release drives, device id -> newest legacy branch, device id
    -> product name of the legacy devices).

    Device ids as '0x2330'. A device listed with several subsystem ids keeps the name of its row without one (the
    chip's own name), else its first row's; a legacy device the name of its newest branch's first row.
    """
    current: dict[str, str] = {}
    plain: set[str] = set()
    legacy: dict[str, int] = {}
    legacy_names: dict[str, str] = {}
    start = text.find("A1. CURRENT NVIDIA GPUS")
    end = text.find("Appendix B.", start)
    if start < 0:
        raise ValueError("no 'A1. CURRENT NVIDIA GPUS' section: not the NVIDIA driver's README")
    branch = None
    for line in text[start:end].splitlines():
        heading = _LEGACY.match(line)
        if heading:
            branch = int(heading["branch"])
            continue
        row = _ROW.match(line)
        if not row:
            continue
        device = "0x" + row["device"].lower()
        if branch is None:
            with_subsystem = row["subsystem"] is not None
            if device not in current or (device not in plain and not with_subsystem):
                current[device] = row["name"]
            if not with_subsystem:
                plain.add(device)
        elif device not in current and branch > legacy.get(device, 0):
            legacy[device] = branch
            legacy_names[device] = row["name"]
    return current, legacy, legacy_names


def parse_open_readme(text: str) -> set[str]:
    """Device ids ('0x2330') of the open kernel modules' "Compatible GPUs" table."""
    start = text.find("## Compatible GPUs")
    if start < 0:
        raise ValueError("no '## Compatible GPUs' section: not the open kernel modules' README")
    return {"0x" + row["device"].lower() for line in text[start:].splitlines() if (row := _OPEN_ROW.match(line))}


def read_from_deb(deb: Path, member: str) -> str:
    """One gzip-compressed document of a Debian package, as text (dpkg-deb unpacks the data archive)."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        try:
            extracted = archive.extractfile("." + member if not member.startswith(".") else member)
        except KeyError:
            extracted = None
        if extracted is None:
            raise ValueError(f"{deb.name} has no {member}")
        return gzip.decompress(extracted.read()).decode()


def driver_version(deb: Path) -> str:
    """The upstream driver version of a package file name: nvidia-kernel-dkms_550.163.01-2_amd64.deb -> 550.163.01."""
    return deb.name.split("_")[1].split("-")[0]
