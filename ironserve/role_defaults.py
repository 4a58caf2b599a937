"""Role defaults as the Python rules see them: read from each role's defaults/main.yml, the one home of a default.

The cross-host checks read other hosts' variables through ``hostvars``, which holds what the inventory sets but not
the roles' defaults; a rule that needs a value the inventory left out takes it from here instead of restating it (a
restated default drifts: ``data_network_host_index`` once was 0 in its role and None in Python).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ironserve import paths


class RoleDefaultError(LookupError):
    """A rule asked for a default no role has, or one only Ansible can resolve (a template)."""


def roles_dirs() -> list[Path]:
    """Where the roles are: beside this package in a checkout; else, where the package is installed on its own (an
    AWX execution environment), the project's, from ANSIBLE_ROLES_PATH or the folder Ansible runs in."""
    candidates = [paths.REPO_ROOT / "roles"]
    candidates += [Path(entry) for entry in os.environ.get("ANSIBLE_ROLES_PATH", "").split(os.pathsep) if entry]
    candidates.append(Path.cwd() / "roles")
    return [folder for folder in candidates if any(folder.glob("*/defaults/main.yml"))]


@functools.cache
def _defaults() -> dict[str, Any]:
    import yaml  # imported here: the GPU machine check (tools/gpu-device-check.sh) runs without PyYAML

    found: dict[str, Any] = {}
    for folder in roles_dirs()[:1]:  # the first that has roles: a checkout's own before anything around it
        for path in sorted(folder.glob("*/defaults/main.yml")):
            found.update(yaml.safe_load(path.read_text()) or {})
    return found


def default(name: str) -> Any:
    """The default of ``name`` from the role that owns it."""
    try:
        value = _defaults()[name]
    except KeyError:
        where = ", ".join(str(folder) for folder in roles_dirs()[:1]) or "no roles folder found"
        raise RoleDefaultError(f"no role has a default for {name} ({where})") from None
    if isinstance(value, str) and "{{" in value:
        raise RoleDefaultError(f"{name}'s default is a template, which only Ansible resolves")
    return value


def resolved(variables: Mapping[str, Any] | None, name: str) -> Any:
    """``name`` as a host would get it: its value in ``variables`` (hostvars of a host), else its role's default."""
    value = variables.get(name) if variables is not None else None
    return default(name) if value is None else value
