"""Whether the initramfs that ``update-initramfs -u`` refreshes must be rebuilt, and the deferral that makes it once.

Package installs ask for a rebuild through initramfs-tools' dpkg trigger: the NVIDIA driver's transaction rebuilt
three times, the storage tools' once before the storage role's own rebuild for mdadm.conf (about a minute each under
TCG, measured). ironserve's transactions record those requests instead (``deferral_files``), and one rebuild per
stage makes them together with the roles' own files (``requested_by``, ``stale_inputs``).
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


# Deferral: three rebuilds in one transaction are not avoidable with dpkg's own options (--no-triggers still
# processes the trigger where a dependency waits on another package's trigger, measured), so ironserve's package
# transactions run with a PATH on which update-initramfs only records the request; ironserve_initramfs then makes
# the one update at the end of the stage. apt sets the PATH of dpkg and the maintainer scripts from DPkg::Path, which
# this apt.conf sets; nothing else on the host sees the recorder. /run is mounted noexec on Debian: not there.
DEFERRAL_DIR = "/usr/local/lib/ironserve/initramfs-deferral"
REQUESTS_FILE = "/var/lib/ironserve/initramfs-requests"
# apt's own default for DPkg::Path, after the recorder.
APT_DPKG_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
REAL_UPDATE_INITRAMFS = "/usr/sbin/update-initramfs"

_RECORDER = """\
#!/bin/sh
# Written by ironserve (ironserve_initramfs, state=deferral). On the PATH only of ironserve's own package
# transactions (APT_CONFIG={apt_config}): an update that a package's scripts or initramfs-tools' trigger ask for
# is recorded in {requests} and made once, by ironserve_initramfs, when the stage's changes are done.
if [ "$#" = 1 ] && [ "$1" = -u ]; then
\tmkdir -p "{requests_dir}"
\techo "${{DPKG_MAINTSCRIPT_PACKAGE:-initramfs-tools}}" >> "{requests}"
\techo "update-initramfs: deferred by ironserve to the end of the stage"
\texit 0
fi
exec {real} "$@"
"""


def deferral_files(
    deferral_dir: str = DEFERRAL_DIR, requests_file: str = REQUESTS_FILE, real_program: str = REAL_UPDATE_INITRAMFS
) -> dict[str, tuple[str, int]]:
    """path -> (content, mode) of the recorder and the apt configuration that puts it first on dpkg's PATH."""
    bin_dir = os.path.join(deferral_dir, "bin")
    apt_config = os.path.join(deferral_dir, "apt.conf")
    recorder = _RECORDER.format(
        apt_config=apt_config,
        requests=requests_file,
        requests_dir=os.path.dirname(requests_file),
        real=real_program,
    )
    return {
        os.path.join(bin_dir, "update-initramfs"): (recorder, 0o755),
        apt_config: (
            "// Written by ironserve: dpkg's PATH in ironserve's own package transactions (see bin/update-initramfs).\n"
            f'DPkg::Path "{bin_dir}:{APT_DPKG_PATH}";\n',
            0o644,
        ),
    }


def requested_by(requests_file: str = REQUESTS_FILE) -> list[str]:
    """The packages whose request for an update was recorded and not yet made (in order, each once)."""
    try:
        with open(requests_file, encoding="utf-8") as recorded:
            lines = [line.strip() for line in recorded]
    except FileNotFoundError:
        return []
    return list(dict.fromkeys(line for line in lines if line))
