"""Compare what a lab machine sees with what it was declared to have.

Used by the bench's own tests (Molecule verify) and unit-tested on recorded ``lsblk`` output. Each
function returns the list of differences as sentences; empty means the machine matches.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from ironserve import paths
from ironserve.lab.spec import Disk, Machine

GIB = 1024**3


def _describe(disks: dict[str, int]) -> str:
    return ", ".join(f"{serial} ({size // GIB} GiB)" for serial, size in sorted(disks.items())) or "none"


def disk_mismatches(machine: Machine, lsblk_devices: list[dict[str, Any]]) -> list[str]:
    """Compare ``lsblk --json --bytes --nodeps -o NAME,SIZE,SERIAL,ROTA,TRAN,TYPE`` with the declaration.

    NVMe drives must be non-rotational on the nvme transport, hard disks rotational sd devices; both are
    matched by serial and size. The virtio root disk of the lab is not part of the declaration.
    """
    problems: list[str] = []
    seen_nvme: dict[str, int] = {}
    seen_hdd: dict[str, int] = {}
    for device in lsblk_devices:
        if device.get("type") != "disk":
            continue
        name, serial = device["name"], (device.get("serial") or "").strip()
        size, rotational = int(device["size"]), bool(int(device["rota"]))
        if name.startswith("nvme"):
            if rotational:
                problems.append(f"{name} ({serial}) is an NVMe drive reported rotational")
            seen_nvme[serial] = size
        elif name.startswith("sd"):
            if not rotational:
                problems.append(f"{name} ({serial}) is a hard disk reported non-rotational")
            seen_hdd[serial] = size
    for kind, declared, seen in (("NVMe", machine.nvme, seen_nvme), ("hard disk", machine.hdd, seen_hdd)):
        expected = {disk.serial: disk.size_gb * GIB for disk in declared}
        if expected != seen:
            problems.append(
                f"{machine.name}: {kind} drives differ from the declaration: "
                f"declared {_describe(expected)}, found {_describe(seen)}"
            )
    return problems


def nic_mismatches(machine: Machine, nics: dict[str, dict[str, Any]], data_mtu: int) -> list[str]:
    """Compare the machine's physical NICs (name -> {mac, mtu}) with its declared management and data NICs."""
    problems: list[str] = []
    by_mac = {nic["mac"].lower(): name for name, nic in nics.items()}
    expected = {machine.mgmt_mac: "management", machine.data_mac: "data"}
    if set(by_mac) != set(expected):
        problems.append(
            f"{machine.name}: NICs differ from the declaration: declared "
            f"{', '.join(f'{role} {mac}' for mac, role in sorted(expected.items()))}; "
            f"found {', '.join(f'{name} {mac}' for mac, name in sorted(by_mac.items())) or 'none'}"
        )
    data_nic = by_mac.get(machine.data_mac)
    if data_nic is not None and int(nics[data_nic]["mtu"]) != data_mtu:
        problems.append(f"{machine.name}: data NIC {data_nic} has MTU {nics[data_nic]['mtu']}, declared {data_mtu}")
    return problems


def with_extra_nvme(machine: Machine) -> Machine:
    """The same machine declared with one more NVMe drive: used to prove the comparison catches a difference."""
    extra = Disk(serial=f"{machine.name[:12]}-EXTRA", size_gb=1)
    return Machine(**{**machine.__dict__, "nvme": (*machine.nvme, extra)})


def ansible_env() -> dict[str, str]:
    """The environment for a bench test that runs ansible or ansible-playbook itself: this project's modules,
    module_utils, filters and roles, as ansible.cfg and Molecule's config set them for converge."""
    return {
        **os.environ,
        "ANSIBLE_LIBRARY": str(paths.REPO_ROOT / "library"),
        "ANSIBLE_MODULE_UTILS": str(paths.REPO_ROOT / "module_utils"),
        "ANSIBLE_FILTER_PLUGINS": str(paths.REPO_ROOT / "filter_plugins"),
        "ANSIBLE_ROLES_PATH": str(paths.REPO_ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
    }


def role_playbook(folder: Path, hosts: str, *roles: str, become: bool = True, gather_facts: bool = True) -> Path:
    """A playbook in ``folder`` that applies ``roles`` to ``hosts``: how bench tests run a role on its own."""
    playbook = folder / f"{'-'.join(roles)}.yml"
    playbook.write_text(
        f"- name: Apply {', '.join(roles)}\n  hosts: {hosts}\n  become: {str(become).lower()}\n"
        f"  gather_facts: {str(gather_facts).lower()}\n  roles: [{', '.join(roles)}]\n"
    )
    return playbook


def ansible_playbook(
    inventory: str,
    playbook: Path,
    extra_vars: dict | None = None,
    timeout: int = 600,
    verbosity: int = 0,
    limit: str | None = None,
) -> subprocess.CompletedProcess:
    """Run a playbook with this project's plugins and roles; the caller asserts on the exit code and output."""
    argv = [paths.tool("ansible-playbook"), "-i", inventory, str(playbook)] + (
        ["-" + "v" * verbosity] if verbosity else []
    )
    if limit:
        argv += ["--limit", limit]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    return subprocess.run(argv, capture_output=True, text=True, env=ansible_env(), timeout=timeout, check=False)


def ansible_module(
    inventory: str, pattern: str, module: str, args: str = "", *options: str, timeout: int = 300
) -> dict[str, dict]:
    """Run one module ad hoc; return each host's result. Fails with the output's end if Ansible fails."""
    env = {**ansible_env(), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    argv = [paths.tool("ansible"), pattern, "-i", inventory, "-m", module, *options]
    if args:
        argv += ["-a", args]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{module} on {pattern} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    # Other enabled callbacks (profile_tasks) print around the JSON document.
    document, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{") :])
    return document["plays"][0]["tasks"][0]["hosts"]
