"""Whether the initramfs that ``update-initramfs -u`` refreshes already holds the files a role wrote.

Package installs rebuild the initramfs through initramfs-tools' dpkg trigger (the NVIDIA driver's install did
three times in one apt transaction, measured), so a role that wrote its configuration before installing often
finds the initramfs current already. Reading that before rebuilding saves a rebuild per host per run.
Stdlib only: it runs on the target.
"""

from __future__ import annotations

import os
import re

INITRD_PREFIX = "initrd.img-"


def _version_key(version: str) -> list:
    # Debian orders kernel versions the way dpkg does; digits as numbers and the rest as text is the same order
    # for kernel release strings (6.12.9 < 6.12.118, "+deb13" after the numbers).
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.findall(r"\d+|[^\d]+", version)]


def newest_initrd(boot_dir: str = "/boot") -> tuple[str, str] | None:
    """(kernel version, initrd path) of the newest kernel's initramfs, the one ``update-initramfs -u`` updates."""
    try:
        names = os.listdir(boot_dir)
    except FileNotFoundError:
        return None
    versions = [name[len(INITRD_PREFIX) :] for name in names if name.startswith(INITRD_PREFIX)]
    versions = [v for v in versions if not v.endswith((".bak", ".old-dkms", ".dpkg-bak"))]
    if not versions:
        return None
    version = max(versions, key=_version_key)
    return version, os.path.join(boot_dir, INITRD_PREFIX + version)


def stale_inputs(initrd: str, must_contain: list[str]) -> list[str]:
    """The files of ``must_contain`` written after ``initrd`` was made (a missing file is in nothing: ignored)."""
    built = os.stat(initrd).st_mtime
    return [path for path in must_contain if os.path.exists(path) and os.stat(path).st_mtime > built]
