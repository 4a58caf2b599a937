"""Every shell program the project ships or runs is read by shellcheck (Debian's package, installed by make setup):
the tracked scripts by their shebang (roles' files, the bench's seed, the stand-ins, tools, CI) and the engines'
launch scripts as the inference role renders them for each engine and placement. Jinja templates of scripts are
left to the scenarios that run them rendered."""

from __future__ import annotations

import subprocess

import pytest

from ironserve import engines, paths

SHEBANGS = ("#!/bin/sh", "#!/bin/bash", "#!/usr/bin/env bash", "#!/usr/bin/env sh")
HOSTS = ["gpu-1", "gpu-2"]
DATA_ADDRESSES = {"gpu-1": "198.51.100.11/24", "gpu-2": "198.51.100.12/24"}


def _shell_scripts() -> list[str]:
    tracked = subprocess.run(["git", "ls-files"], cwd=paths.REPO_ROOT, capture_output=True, text=True, check=True)
    scripts = []
    for name in tracked.stdout.splitlines():
        if name.endswith(".j2"):
            continue
        with (paths.REPO_ROOT / name).open("rb") as handle:
            first = handle.readline().decode("utf-8", "replace")
        if first.startswith(SHEBANGS):
            scripts.append(name)
    return scripts


def _shellcheck(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["shellcheck", *argv], cwd=paths.REPO_ROOT, input=stdin, capture_output=True, text=True, check=False
    )


def test_every_tracked_shell_script_passes_shellcheck():
    scripts = _shell_scripts()
    # The ones this test was written for are among them (a broken shebang scan would pass on nothing).
    assert {"roles/backup/files/ironserve-backup", "ironserve/lab/files/ironserve-lab-seed", ".ci/run"} <= set(scripts)
    result = _shellcheck(*scripts)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize("host", [None, *HOSTS])
def test_every_engine_launch_script_passes_shellcheck(engine, host):
    place = engines.Placement(1, 0, "", "") if host is None else engines.placement(HOSTS, host, 2, DATA_ADDRESSES)
    script = engines.launch_script(engine, ["--tp-size", "8"], "r1", "192.0.2.10", 8000, place, 20000, 8)
    result = _shellcheck("--shell=sh", "-", stdin=script)
    assert result.returncode == 0, result.stdout
