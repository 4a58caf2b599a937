"""Where ironserve keeps state on the controller.

Caches (the base image, the package bundle) outlive a lab so that a machine builds them once;
everything a lab creates lives under its own folder and goes away with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    """The ironserve state folder: $IRONSERVE_HOME, else ~/.cache/ironserve.

    inventories/lab/group_vars/all.yml resolves the same folder for Ansible; keep the two in step.
    """
    explicit = os.environ.get("IRONSERVE_HOME")
    return Path(explicit) if explicit else Path.home() / ".cache" / "ironserve"


def images_dir() -> Path:
    return home() / "images"


def bundle_dir() -> Path:
    return home() / "bundle"


def labs_dir() -> Path:
    return home() / "labs"


def consoles_dir(lab: str) -> Path:
    """Where 'lab down' keeps the serial consoles of a lab's QEMU machines (the last lab of that name only)."""
    return home() / "consoles" / lab


def ssh_key_path() -> Path:
    """The private key the lab machines accept for root (generated on first use)."""
    return home() / "lab_ed25519"


def tool(name: str) -> str:
    """An Ansible command from the Python environment ironserve runs in, so a venv works without activation."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def layers_dir() -> Path:
    return home() / "layers"


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Hold the state folder's lock ``name`` (an flock, released when the holder exits, even killed), so that two
    labs booting side by side build a shared cache entry (the base image, the bundle, a layer) once."""
    folder = home() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ansible_env() -> dict[str, str]:
    """The environment for ansible or ansible-playbook run from anywhere (the bench's layers, its tests and
    benchmarks): this project's modules, module_utils, filters and roles, as ansible.cfg and Molecule's config set
    them for converge."""
    return {
        **os.environ,
        "ANSIBLE_LIBRARY": str(REPO_ROOT / "library"),
        "ANSIBLE_MODULE_UTILS": str(REPO_ROOT / "module_utils"),
        "ANSIBLE_FILTER_PLUGINS": str(REPO_ROOT / "filter_plugins"),
        "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
    }
