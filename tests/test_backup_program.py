"""The backup role's program (roles/backup/files/ironserve-backup) with Debian's restic at the role's pin, against a
repository in a local folder: the repository made once, a backup with its metrics, a restore plan and a restore, and a
damaged pack found by the check, reported in the metrics and by the restore plan, never restored from."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from debian_tools import tool

REPO = Path(__file__).resolve().parents[1]
PROGRAM = REPO / "roles" / "backup" / "files" / "ironserve-backup"


@pytest.fixture(scope="module")
def restic() -> Path:
    return tool("restic", "restic")


@pytest.fixture
def site(tmp_path, restic):
    """A host's backup settings as the role renders them (templates/target.env.j2), pointing at local folders."""
    config, data = tmp_path / "config", tmp_path / "data"
    config.mkdir()
    (data / "etc-ironserve" / "inference").mkdir(parents=True)
    (data / "etc-ironserve" / "inference" / "api-key.env").write_text("IRONSERVE_API_KEY=is-secret\n")
    (data / "models" / "m" / "rev1").mkdir(parents=True)
    (data / "models" / "m" / "rev1" / ".ironserve-manifest").write_text("00  config.json\n")
    (data / "models" / "m" / "rev1" / "weights.safetensors").write_bytes(b"w" * 1000)
    (data / "models" / "m" / "current").symlink_to("rev1")  # as the weights module links it
    (tmp_path / "textfile").mkdir()
    (config / "password").write_text("a-long-enough-password\n")
    (config / "credentials.json").write_text('{"access_key": "unused", "secret_key": "unused"}\n')
    (config / "cold.env").write_text(
        "IRONSERVE_BACKUP_HOST=gpu01\n"
        f"IRONSERVE_BACKUP_REPOSITORY_BASE={tmp_path / 'repositories'}\n"
        f"IRONSERVE_BACKUP_CREDENTIALS={config / 'credentials.json'}\n"
        "IRONSERVE_BACKUP_MAX_AGE_SECONDS=10800\n"
        'IRONSERVE_BACKUP_KEEP="--keep-hourly 24 --keep-daily 7 --keep-weekly 5 --keep-monthly 12"\n'
        "IRONSERVE_BACKUP_CHECK_SUBSET=100%\n"
        f"IRONSERVE_BACKUP_TEXTFILE_DIR={tmp_path / 'textfile'}\n"
        f"RESTIC_PASSWORD_FILE={config / 'password'}\n"
        f"RESTIC_CACHE_DIR={tmp_path / 'cache'}\n"
        "AWS_DEFAULT_REGION=us-east-1\n"
    )
    (config / "paths").write_text(
        f"# what is backed up\n{data / 'etc-ironserve'}\n{data / 'models'}/*/*/.ironserve-manifest\n{data / 'absent'}\n"
    )
    (config / "excludes").write_text(f"{data / 'etc-ironserve'}/*.tmp\n")
    env = {
        # bin: where a test may put a wrapper in front of restic.
        "PATH": f"{tmp_path / 'bin'}:{restic.parent}:{os.environ['PATH']}",
        "IRONSERVE_BACKUP_CONFIG_DIR": str(config),
        "IRONSERVE_BACKUP_STATE_DIR": str(tmp_path / "state"),
        "IRONSERVE_BACKUP_LOCK_DIR": str(tmp_path),
    }

    def program(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(PROGRAM), *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )

    return program, tmp_path, data


def _metrics(folder: Path) -> dict[str, float]:
    text = (folder / "textfile" / "ironserve_backup_cold.prom").read_text()
    return {
        line.split("{")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_init_makes_the_repository_once(site):
    program, _, _ = site
    first, again = program("init", "cold"), program("init", "cold")
    assert (first.returncode, first.stdout.strip()) == (0, "initialised"), first.stderr
    assert (again.returncode, again.stdout.strip()) == (0, "exists"), again.stderr


def test_a_backup_its_metrics_its_plan_and_a_restore(site):
    program, folder, data = site
    program("init", "cold")
    started = time.time()
    backed = program("run", "cold")
    assert backed.returncode == 0, backed.stderr
    metrics = _metrics(folder)
    assert metrics["ironserve_backup_last_run_success"] == 1
    assert metrics["ironserve_backup_last_success_timestamp_seconds"] >= int(started)
    assert metrics["ironserve_backup_last_added_bytes"] > 0
    assert metrics["ironserve_backup_max_age_seconds"] == 10800
    # The weights themselves are not backed up: their manifests are, once (not again through current).
    plan = json.loads(program("restore-plan", "cold", "gpu01").stdout)
    assert plan["check"] == "ok", plan
    assert plan["snapshot"], plan
    assert 0 <= plan["age_seconds"] < 60
    assert sorted(plan["paths"]) == sorted(
        [str(data / "etc-ironserve"), str(data / "models" / "m" / "rev1" / ".ironserve-manifest")]
    )
    target = folder / "restored"
    restored = program("restore", "cold", plan["snapshot"], str(target), str(data / "etc-ironserve"))
    assert restored.returncode == 0, restored.stderr
    key = target / str(data / "etc-ironserve" / "inference" / "api-key.env").lstrip("/")
    assert key.read_text() == "IRONSERVE_API_KEY=is-secret\n"
    assert not (target / str(data / "models").lstrip("/")).exists()


def test_the_newest_snapshots_time_is_its_start_not_when_the_backup_ended(site, restic):
    """A file written while a backup runs is not in its snapshot: the metric must not claim a later time."""
    program, folder, _ = site
    program("init", "cold")
    (folder / "bin").mkdir()
    wrapper = folder / "bin" / "restic"
    wrapper.write_text(f'#!/bin/sh\n{restic} "$@"; rc=$?\n[ "$1" = backup ] && sleep 2\nexit $rc\n')
    wrapper.chmod(0o755)
    assert program("run", "cold").returncode == 0
    listed = subprocess.run(
        [str(restic), "-r", str(folder / "repositories" / "gpu01"), "snapshots", "--json", "--latest", "1"],
        env={"RESTIC_PASSWORD_FILE": str(folder / "config" / "password"), "RESTIC_CACHE_DIR": str(folder / "cache")},
        capture_output=True,
        text=True,
        check=True,
    )
    # restic writes nanoseconds and the local offset; Python's parser takes neither the nanoseconds nor "Z".
    stamped = datetime.fromisoformat(re.sub(r"\.\d+", "", json.loads(listed.stdout)[0]["time"]).replace("Z", "+00:00"))
    metrics = _metrics(folder)
    assert metrics["ironserve_backup_last_success_timestamp_seconds"] <= stamped.timestamp()
    assert metrics["ironserve_backup_last_run_timestamp_seconds"] >= stamped.timestamp() + 2


def test_no_snapshot_of_a_host_is_a_plan_without_one(site):
    program, _, _ = site
    program("init", "cold")
    plan = json.loads(program("restore-plan", "cold", "gpu01").stdout)
    assert (plan["check"], plan["snapshot"]) == ("ok", None)


def test_a_damaged_pack_is_found_reported_and_not_restored_from(site):
    program, folder, _ = site
    program("init", "cold")
    assert program("run", "cold").returncode == 0
    packs = sorted((folder / "repositories" / "gpu01" / "data").rglob("*"))
    pack = next(p for p in packs if p.is_file())
    pack.chmod(0o600)
    content = bytearray(pack.read_bytes())
    content[100:107] = b"damaged"
    pack.write_bytes(bytes(content))
    checked = program("check", "cold")
    assert checked.returncode == 1
    assert "do not restore from it" in checked.stderr
    metrics = _metrics(folder)
    assert metrics["ironserve_backup_last_check_success"] == 0
    assert metrics["ironserve_backup_last_run_success"] == 1  # the backup's own result is kept
    plan = json.loads(program("restore-plan", "cold", "gpu01").stdout)
    assert plan["check"].startswith("failed (restic exit"), plan
    assert plan["snapshot"] is None
    assert plan["check_output"]


def test_a_wrong_password_fails_with_restics_message_and_a_failed_run_is_counted(site):
    program, folder, _ = site
    program("init", "cold")
    (folder / "config" / "password").write_text("another-long-password\n")
    init = program("init", "cold")
    assert init.returncode != 0
    assert "wrong password" in init.stderr, init.stderr
    run = program("run", "cold")
    assert run.returncode == 1
    assert "backup of target 'cold' failed" in run.stderr
    assert _metrics(folder)["ironserve_backup_last_run_success"] == 0


def test_an_unknown_target_or_command_is_refused(site):
    program, _, _ = site
    assert "no backup target 'offsite'" in program("run", "offsite").stderr
    assert program("frobnicate", "cold").returncode == 2
    assert program("restore-plan", "cold", "gpu01;rm").returncode == 2
