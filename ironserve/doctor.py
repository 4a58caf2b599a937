"""A fast check of the controller and an inventory; it changes nothing, and contacts hosts only for the
optional reachability check (never run it against an inventory whose addresses nobody may contact)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ironserve import paths

SUPPORTED_ANSIBLE_CORE = (2, 19)
REQUIRED_COLLECTIONS = ("ansible.posix", "community.general")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(paths.REPO_ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}


def _python() -> Check:
    version = sys.version_info
    return Check("python", version >= (3, 11), f"{version.major}.{version.minor}.{version.micro} (3.11 or newer)")


def _ansible() -> Check:
    try:
        from ansible.release import __version__
    except ImportError:
        return Check("ansible-core", False, "not installed (run 'make setup')")
    major_minor = tuple(int(p) for p in __version__.split(".")[:2])
    return Check(
        "ansible-core",
        major_minor == SUPPORTED_ANSIBLE_CORE,
        f"{__version__} (supported: {'.'.join(map(str, SUPPORTED_ANSIBLE_CORE))}.x)",
    )


def _runner() -> Check:
    found = importlib.util.find_spec("ansible_runner") is not None
    return Check("ansible-runner", found, "importable" if found else "not installed (run 'make setup')")


def _collections() -> Check:
    missing = []
    for name in REQUIRED_COLLECTIONS:
        try:
            found = importlib.util.find_spec(f"ansible_collections.{name}") is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    detail = f"missing: {', '.join(missing)}" if missing else ", ".join(REQUIRED_COLLECTIONS)
    return Check("collections", not missing, detail)


class InventoryReadError(ValueError):
    """An inventory Ansible cannot read; the message names it and quotes Ansible."""


def read_inventory(inventory: Path | str) -> dict:
    """The inventory as ``ansible-inventory --list`` gives it (groups, and hostvars under ``_meta``)."""
    result = subprocess.run(
        [paths.tool("ansible-inventory"), "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    if result.returncode != 0 or "[WARNING]: Unable to parse" in result.stderr:
        raise InventoryReadError(f"{inventory} does not parse: {result.stderr.strip()[-400:]}")
    return json.loads(result.stdout)


def _inventory(inventory: Path) -> tuple[Check, list[str]]:
    if not inventory.exists():
        return Check("inventory", False, f"{inventory} does not exist"), []
    try:
        data = read_inventory(inventory)
    except InventoryReadError as exc:
        return Check("inventory", False, str(exc)), []
    hosts = sorted(data.get("_meta", {}).get("hostvars", {}))
    if not hosts:
        return Check("inventory", False, f"{inventory} parses but names no host"), []
    groups = sorted(g for g in data if g not in ("_meta", "all", "ungrouped"))
    return Check("inventory", True, f"{len(hosts)} host(s) in groups {', '.join(groups)}"), hosts


def _vault(inventory: Path) -> Check:
    """Every vaulted file or value in the inventory needs a vault password the controller can reach."""
    if not inventory.exists():
        return Check("vaulted secrets", False, f"not checked: {inventory} does not exist")
    vaulted = []
    files = [inventory] if inventory.is_file() else [p for p in inventory.rglob("*") if p.is_file()]
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if text.startswith("$ANSIBLE_VAULT") or "!vault" in text:
            vaulted.append(path)
    if not vaulted:
        return Check("vaulted secrets", True, "the inventory holds no vaulted secret")
    password = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
    if password and Path(password).exists():
        return Check("vaulted secrets", True, f"{len(vaulted)} vaulted file(s); vault password file {password}")
    return Check(
        "vaulted secrets",
        False,
        f"{len(vaulted)} vaulted file(s) ({vaulted[0]}, ...) but no vault password "
        "file: set ANSIBLE_VAULT_PASSWORD_FILE",
    )


def _reachability(inventory: Path, hosts: list[str]) -> Check:
    result = subprocess.run(
        [paths.tool("ansible"), "all", "-i", str(inventory), "-m", "ansible.builtin.ping", "-o"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        check=False,
    )
    failed = [
        line.split(" |", 1)[0] for line in result.stdout.splitlines() if " | UNREACHABLE" in line or " | FAILED" in line
    ]
    if result.returncode == 0:
        return Check("reachability", True, f"{len(hosts)} host(s) answer over SSH with Python")
    return Check("reachability", False, f"not reachable: {', '.join(failed) or result.stderr.strip()[-300:]}")


def check(inventory: Path, reachability: bool = True) -> list[Check]:
    results = [_python(), _ansible(), _runner(), _collections()]
    inventory_check, hosts = _inventory(inventory)
    results += [inventory_check, _vault(inventory)]
    if reachability and inventory_check.ok:
        results.append(_reachability(inventory, hosts))
    elif not reachability:
        results.append(Check("reachability", True, "skipped (--skip-reachability)"))
    return results
