"""Both storage tiers decide their disks through the one internal role tier_plan, run for real on this machine in
check mode with inputs it must refuse: every problem in one message naming each variable, and the run stops before
the tier's first change (the package install). The plan's rules themselves are tests/test_storage.py's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ironserve_target import facts
from lab_ansible import ansible_module, ansible_playbook

from ironserve import paths

PLAYBOOK = Path(__file__).parent / "fixtures" / "tier-plan" / "plan.yml"
LOCAL = ("-c", "local", "-e", "ansible_python_interpreter=python3")


@pytest.fixture(scope="module")
def system_disk() -> str:
    probe = ansible_module("localhost,", "localhost", "ironserve_probe", "sections=disks fact=false", *LOCAL)
    [result] = probe.values()
    disks = [d for d in result["hw"]["storage"]["disks"] if facts.is_system_disk(d)]
    if not disks:
        pytest.skip("the probe finds no system disk on this machine")
    return "/dev/" + disks[0]["name"]


def _run(tmp_path: Path, role: str, variables: dict) -> str:
    host = {"ansible_connection": "local", "ansible_python_interpreter": "python3", "tier_role": role, **variables}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": host}}}))
    result = ansible_playbook(str(inventory), PLAYBOOK, timeout=300, check_mode=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    return output


def test_the_hot_tier_refuses_the_system_disk_and_a_relative_mount_path_at_once(tmp_path, system_disk):
    output = _run(tmp_path, "hot_tier", {"hot_tier_devices": [system_disk], "hot_tier_mount_path": "srv/models"})
    assert "hot tier on localhost:" in output
    assert f"hot_tier_devices selects {system_disk}, the system disk; it is never used" in output
    assert "at least 4 disks needed; hot_tier_devices selects 1" in output
    assert "hot_tier_mount_path is 'srv/models'" in output
    assert "Install mdadm and xfsprogs" not in output


def test_the_warm_tier_names_a_disk_the_host_lacks_and_the_root_as_mount_path(tmp_path, system_disk):
    output = _run(
        tmp_path,
        "warm_tier",
        {"warm_tier_devices": ["/dev/disk/by-id/ata-NOT_HERE_1"], "warm_tier_mount_path": "/"},
    )
    assert "warm tier on localhost:" in output
    assert "warm_tier_devices names /dev/disk/by-id/ata-NOT_HERE_1, which this host does not have" in output
    assert "warm_tier_mount_path is '/'" in output
    assert "Install LVM and xfsprogs" not in output


def test_the_tiers_have_no_plan_of_their_own():
    for role in ("hot_tier", "warm_tier"):
        tasks = paths.REPO_ROOT / "roles" / role / "tasks"
        assert not (tasks / "plan.yml").exists()
        assert "name: tier_plan" in (tasks / "main.yml").read_text()
    plan = (paths.REPO_ROOT / "roles" / "tier_plan" / "tasks" / "main.yml").read_text()
    assert "ironserve_plan_array" in plan
    assert "ironserve_mount_path_problems" in plan
