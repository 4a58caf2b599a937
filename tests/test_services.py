"""The rule "restart only a unit that ran before its Run task" (ironserve.services.ran_before), as the handlers use it:
on systemd_service's results, through Ansible's `when`, and written nowhere else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from role_templates import REPO, run_playbook

from ironserve.services import ran_before


def _result(active_state: str) -> dict:
    # The part of systemd_service's return the rule reads: the unit's status as read before the module acted.
    return {"changed": active_state != "active", "name": "x.service", "status": {"ActiveState": active_state}}


@pytest.mark.parametrize(
    ("run_result", "expected"),
    [
        (_result("active"), True),
        (_result("inactive"), False),
        (_result("failed"), False),
        (_result("activating"), False),
        ({"changed": False, "skipped": True}, True),
        ({}, True),
        (None, True),
    ],
)
def test_only_a_unit_active_before_its_task_is_restarted(run_result, expected):
    assert ran_before(run_result) is expected


def test_the_handlers_conditions_evaluate_with_ansible(tmp_path: Path):
    playbook = tmp_path / "ran-before.yml"
    playbook.write_text(
        "- name: The rule in when, as the handlers write it\n"
        "  hosts: localhost\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Restarted\n"
        "      ansible.builtin.debug:\n"
        "        msg: restart {{ item }}\n"
        "      when: (results[item] if item != 'never-registered' else never_registered) | default({})"
        " | ironserve_ran_before\n"
        "      loop: [active, inactive, skipped, never-registered]\n"
    )
    variables = {
        "results": {"active": _result("active"), "inactive": _result("inactive"), "skipped": {"skipped": True}},
    }
    done = run_playbook(playbook, "localhost,", variables, "-c", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    restarted = {
        item for item in ("active", "inactive", "skipped", "never-registered") if f"restart {item}" in done.stdout
    }
    assert restarted == {"active", "skipped", "never-registered"}


def test_no_role_writes_the_rule_itself():
    # One source of truth: a handler reads a unit's earlier state through the filter, not from the status by hand.
    written = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "roles").rglob("*.yml"))
        if "ActiveState" in path.read_text()
    ]
    assert written == []
    uses = {
        (handlers.parents[1].name, name)
        for handlers in (REPO / "roles").glob("*/handlers/main.yml")
        for name in re.findall(r"(\w+) \| default\(\{\}\) \| ironserve_ran_before", handlers.read_text())
    }
    assert len(uses) >= 6
    # default({}) would turn a misspelt name into "always restart": each name is a register of its own role's tasks.
    unregistered = [
        f"{role}: {name}"
        for role, name in sorted(uses)
        if not any(
            f"register: {name}\n" in tasks.read_text() for tasks in (REPO / "roles" / role / "tasks").glob("*.yml")
        )
    ]
    assert unregistered == []
