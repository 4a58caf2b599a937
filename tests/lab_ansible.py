"""How bench tests run Ansible themselves: a role on its own, a playbook, one module ad hoc, each with this
project's modules, module_utils, filters and roles (paths.ansible_env). Imported by the unit tests and, through the
verifier's PYTHONPATH (.config/molecule/config.yml), by the scenarios' verify."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ironserve import paths
from ironserve.paths import ansible_env


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
    check_mode: bool = False,
) -> subprocess.CompletedProcess:
    """Run a playbook with this project's plugins and roles; the caller asserts on the exit code and output."""
    argv = [paths.tool("ansible-playbook"), "-i", inventory, str(playbook)] + (
        ["-" + "v" * verbosity] if verbosity else []
    )
    if limit:
        argv += ["--limit", limit]
    if check_mode:
        argv.append("--check")
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


def ad_hoc_with_bench_strategy(*arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``ansible localhost -c local ARGUMENTS`` under the strategy the bench runs every scenario with."""
    from bench.run_scenarios import strategy_env

    ansible = [paths.tool("ansible"), "localhost", "-c", "local", "-e", "ansible_python_interpreter=python3"]
    return subprocess.run(
        [*ansible, *arguments],
        cwd=paths.REPO_ROOT,
        capture_output=True,
        text=True,
        env={**ansible_env(), **strategy_env("mitogen")},
        timeout=timeout,
        check=False,
    )
