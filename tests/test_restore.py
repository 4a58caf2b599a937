"""ironserve restore: the run it plans (restore, the site's stages, restore_finish, with the request as variables)
and the input it refuses before anything runs."""

from __future__ import annotations

import pytest

from ironserve import cli, restore, run

REPO_SITE = restore.paths.REPO_ROOT / "site.yml"


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    gpu01: {}\n")
    return path


def test_a_restore_is_the_restore_playbook_the_sites_stages_and_the_finish(inventory):
    planned = restore.plan(REPO_SITE, inventory, "gpu01")
    names = [stage.name for stage, _ in planned.stages]
    assert names[0] == "restore"
    assert names[-1] == "restore_finish"
    assert names[1:-1] == [stage.name for stage, _ in run.plan(REPO_SITE, inventory).stages]
    assert planned.stages[0][0].playbook == restore.RESTORE_PLAYBOOK
    # Every stage on every host: the pair's secrets, backends and targets span hosts.
    assert all(limit is None for _, limit in planned.stages)
    assert planned.record.extravars == {
        "restore_host": "gpu01",
        "restore_snapshot": "latest",
        "restore_target": "cold",
        "restore_force": False,
        "restore_accept_old": False,
    }


def test_the_stages_between_can_be_chosen_and_the_request_reaches_the_playbooks(inventory):
    planned = restore.plan(
        REPO_SITE, inventory, "gpu01", "1a2b3c4d", "offsite", force=True, accept_old=True, stage_names="base, backup"
    )
    assert [stage.name for stage, _ in planned.stages] == ["restore", "base", "backup", "restore_finish"]
    assert planned.record.extravars["restore_snapshot"] == "1a2b3c4d"
    assert planned.record.extravars["restore_target"] == "offsite"
    assert planned.record.extravars["restore_force"] is True
    assert planned.record.extravars["restore_accept_old"] is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--host", ""], "--host '' is not an inventory host name"),
        (["--host", "gpu01;reboot"], "is not an inventory host name"),
        (["--host", "gpu01", "--snapshot", "yesterday"], "--snapshot 'yesterday' is not a snapshot id"),
        (["--host", "gpu01", "--snapshot", "1a2b"], "8-64 hex digits"),
        (["--host", "gpu01", "--target", "tape"], "--target 'tape' is not a backup target: one of cold, offsite"),
        (["--host", "gpu01", "--stages", "base,,gpu"], "names an empty stage"),
        (["--host", "gpu01", "--stages", "nightly"], "no stage named 'nightly'"),
    ],
)
def test_bad_input_is_refused_with_one_line_before_anything_runs(inventory, capsys, monkeypatch, options, message):
    monkeypatch.setattr(run, "execute", lambda *args: pytest.fail("a refused restore ran"))
    assert cli.main(["restore", "--inventory", str(inventory), "--plain", *options]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1, err


def test_a_missing_inventory_is_refused_as_for_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run, "execute", lambda *args: pytest.fail("a refused restore ran"))
    missing = str(tmp_path / "no-such-inventory")
    assert cli.main(["restore", "--inventory", missing, "--host", "gpu01", "--plain"]) == cli.EXIT_BAD_INPUT
    assert f"inventory {missing} does not exist" in capsys.readouterr().err


def test_the_targets_are_the_backup_roles():
    import yaml

    targets = (restore.paths.REPO_ROOT / "roles" / "backup" / "tasks" / "targets.yml").read_text()
    names = {item["name"] for key in ("_cold", "_offsite") for item in yaml.safe_load(targets)[0]["vars"][key]}
    assert names == set(restore.TARGETS)
