"""Debian 13's own tools on the controller, at the versions the roles pin: promtool and amtool check the rules and
configuration the monitoring role renders, as the hosts' copies do before Prometheus reads them; restic runs the
backup role's program against a local repository.

Each package is fetched once through the bundle's private apt (Debian's archive, signed indexes; the controller's
own apt untouched) and unpacked into the bench cache; the binaries are Go programs needing only libc.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from ironserve import paths
from ironserve.bundle.build import private_apt

REPO = Path(__file__).resolve().parents[1]


def pinned(package: str) -> str:
    """The version a role pins for ``package`` in its vars/Debian.yml (the one source of the pin)."""
    for pins in sorted(REPO.glob("roles/*/vars/Debian.yml")):
        for values in (yaml.safe_load(pins.read_text()) or {}).values():
            for entry in values if isinstance(values, list) else []:
                name, _, version = str(entry).partition("=")
                if name == package and version:
                    return version
    raise LookupError(f"no role pins a version of {package}")


def tool(package: str, binary: str) -> Path:
    """``/usr/bin/<binary>`` of Debian's ``package`` at its pinned version, fetched and unpacked on first use."""
    version = pinned(package)
    folder = paths.home() / "tools" / f"{package}_{version}"
    path = folder / "usr" / "bin" / binary
    if path.exists():
        return path
    with private_apt() as apt:
        if path.exists():  # fetched by another worker while this one waited
            return path
        download = folder.with_name(folder.name + ".download")
        shutil.rmtree(download, ignore_errors=True)
        download.mkdir(parents=True)
        argv = apt.argv("download", f"{package}={version}")
        if subprocess.run(argv, cwd=download, capture_output=True, text=True).returncode != 0:
            # The private apt's indexes may be missing or older than the pin: refresh them once.
            subprocess.run(apt.argv("update"), capture_output=True, text=True, check=True)
            subprocess.run(argv, cwd=download, capture_output=True, check=True)
        (deb,) = download.glob(f"{package}_*.deb")
        # Unpacked beside, then renamed into place: a reader checks the path without the lock and must find a whole
        # folder or none.
        unpacked = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        unpacked.rename(folder)
    return path
