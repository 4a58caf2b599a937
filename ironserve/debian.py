"""The Debian release ironserve targets, and where its packages come from on a connected machine.

The lab image and the package bundle are built from the same sources so that bundle packages fit the
image's installed base.
"""

from __future__ import annotations

import os

SUITE = "trixie"
ARCHITECTURE = "amd64"
ARCHIVE = os.environ.get("IRONSERVE_DEBIAN_ARCHIVE", "http://deb.debian.org/debian")
SECURITY_ARCHIVE = os.environ.get("IRONSERVE_DEBIAN_SECURITY_ARCHIVE", "http://deb.debian.org/debian-security")
COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")
ARCHIVE_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def source_lines() -> list[str]:
    """One-line apt sources for the release, its updates and its security fixes."""
    components = " ".join(COMPONENTS)
    return [
        f"deb {ARCHIVE} {SUITE} {components}",
        f"deb {ARCHIVE} {SUITE}-updates {components}",
        f"deb {SECURITY_ARCHIVE} {SUITE}-security {components}",
    ]
