"""Stages, runs, resume and exit codes: unit tests, and ansible-runner driving a stage that fails on purpose."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ironserve import cli, paths, run, stages
from ironserve.run import Failure, RunRecord, StageRecord

SITE = Path(__file__).parent / "fixtures" / "runner-site"


def test_stages_come_from_site_yml_in_order():
    assert [s.name for s in stages.from_site(paths.REPO_ROOT / "site.yml")] == [
        "preflight",
        "base",
        "network",
        "network_check",
        "gpu",
        "storage",
        "inference",
        "frontend",
        "monitoring",
        "backup",
    ]
    found = stages.from_site(SITE / "site.yml")
    assert [(s.name, s.playbook.name) for s in found] == [("one", "one.yml"), ("two", "two.yml")]


@pytest.mark.parametrize(
    ("only", "start", "expected"),
    [
        (None, None, ["one", "two"]),
        (["two"], None, ["two"]),
        (["two", "one"], None, ["one", "two"]),
        (None, "two", ["two"]),
    ],
)
def test_stage_selection(only, start, expected):
    assert [s.name for s in stages.select(stages.from_site(SITE / "site.yml"), only, start)] == expected


def test_unknown_stage_is_bad_input_naming_the_stages():
    with pytest.raises(stages.StageError, match="no stage named 'three'; the stages are: one, two"):
        stages.select(stages.from_site(SITE / "site.yml"), ["three"])


def _record(*stage_records: StageRecord, limit: str | None = None) -> RunRecord:
    return RunRecord(
        id="r1", started="t", inventory="inv", limit=limit, check=False, diff=False, stages=list(stage_records)
    )


def test_resume_plan_takes_the_first_incomplete_stage_and_its_failed_hosts():
    record = _record(
        StageRecord("a", "a.yml", None, status="ok"),
        StageRecord(
            "b",
            "b.yml",
            None,
            status="failed",
            failures=[Failure("h2", "t", "m"), Failure("h3", "t", "m", unreachable=True)],
        ),
        StageRecord("c", "c.yml", None),
        limit="gpu_servers",
    )
    assert run.resume_plan(record) == [("b", "h2,h3"), ("c", "gpu_servers")]
    assert run.resume_plan(_record(StageRecord("a", "a.yml", None, status="ok"))) == []
    never_ran = _record(StageRecord("a", "a.yml", "h1"))
    assert run.resume_plan(never_ran) == [("a", "h1")]


def test_exit_codes():
    ok = StageRecord("a", "a.yml", None, status="ok")
    assert run.exit_code(_record(ok)) == run.EXIT_OK
    unreachable = StageRecord("b", "b.yml", None, status="unreachable", failures=[Failure("h1", "t", "m", True)])
    assert run.exit_code(_record(ok, unreachable)) == run.EXIT_UNREACHABLE
    failed = StageRecord(
        "b", "b.yml", None, status="failed", failures=[Failure("h1", "t", "m", True), Failure("h2", "t", "m")]
    )
    assert run.exit_code(_record(ok, failed)) == run.EXIT_HOST_FAILED
    assert (
        run.EXIT_OK,
        run.EXIT_HOST_FAILED,
        run.EXIT_BAD_INPUT,
        run.EXIT_ENVIRONMENT,
        run.EXIT_UNREACHABLE,
        run.EXIT_CHANGED,
    ) == (0, 1, 2, 3, 4, 5)


def test_markdown_record_names_hosts_counts_and_failures():
    stage = StageRecord(
        "base",
        "b.yml",
        None,
        status="failed",
        duration_s=12.5,
        hosts={"gpu-a": {"ok": 5, "changed": 2, "failed": 1, "unreachable": 0, "skipped": 1}},
        failures=[Failure("gpu-a", "Install the baseline tools", "No package matching 'x'\nmore")],
    )
    record = _record(StageRecord("preflight", "p.yml", None, status="ok", duration_s=3.0), stage)
    record.exit_code = 1
    record.hardware_reports = {"gpu-a": "/a/hardware/gpu-a.md"}
    text = run.markdown(record)
    assert "| base | failed | 12.5 s | 1 | all |" in text
    assert "| gpu-a | 5 | 2 | 1 | 0 | 1 |" in text
    assert "- **gpu-a**, task *Install the baseline tools*: No package matching 'x'" in text
    assert "- gpu-a: `/a/hardware/gpu-a.md`" in text
    assert run.summary(record) == [
        "stage base: gpu-a: failed at task 'Install the baseline tools': No package matching 'x'"
    ]


def test_a_failing_stage_stops_the_run_and_resume_finishes_it(tmp_path, monkeypatch, capsys):
    """ansible-runner drives the real stages: two fails on h2, the run stops there; --resume redoes h2 only."""
    monkeypatch.setenv("IRONSERVE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    flag = tmp_path / "flag"
    monkeypatch.setenv("IRONSERVE_TEST_FLAG", str(flag))
    argv = ["run", "--site", str(SITE / "site.yml"), "--inventory", str(SITE / "inventory.yml")]

    assert cli.main([*argv, "--json"]) == run.EXIT_HOST_FAILED
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events if e["event"].startswith("stage")] == [
        "stage_start",
        "stage_end",
        "stage_start",
        "stage_end",
    ]
    first = run.find_run(None)
    assert [(s.name, s.status) for s in first.stages] == [("one", "ok"), ("two", "failed")]
    two = first.stages[1]
    assert [(f.host, f.task, f.message) for f in two.failures] == [
        ("h2", "Fail on purpose until the flag exists", f"h2 is not ready: {flag} is missing")
    ]
    assert two.hosts["h2"]["failed"] == 1
    assert two.hosts["h1"]["failed"] == 0
    assert (tmp_path / "done").read_text().split() == ["h1"]
    assert (first.folder / "run.md").exists()
    assert Path(two.artifacts, "artifacts").is_dir()  # ansible-runner's own job artifacts

    flag.write_text("ready\n")
    # The run's own inventory, wherever the resume is started from (no default inventory there).
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--resume", "--inventory", "other.yml"]) == run.EXIT_BAD_INPUT
    assert "drop --inventory" in capsys.readouterr().err
    assert cli.main(["run", "--resume", "--plain"]) == run.EXIT_OK
    out = capsys.readouterr().out
    assert "== stage two (limit h2)" in out
    resumed = run.find_run(None)
    assert resumed.resumed_from == first.id
    assert [(s.name, s.status, s.limit) for s in resumed.stages] == [("two", "ok", "h2")]
    assert sorted(resumed.stages[0].hosts) == ["h2"]
    assert (tmp_path / "done").read_text().split() == ["h1", "h2"]

    assert cli.main(["run", "--resume"]) == run.EXIT_OK
    assert "nothing to resume" in capsys.readouterr().out
    assert cli.main(["report", resumed.id]) == run.EXIT_OK
    assert f"# ironserve run {resumed.id}" in capsys.readouterr().out


def test_a_drift_check_fails_naming_each_change_and_passes_on_a_converged_site(tmp_path, monkeypatch, capsys):
    """--expect-no-change: stage two's first run writes its mark on each host (changes, exit 5, each host and task
    named in the summary and the record); the same run again changes nothing and exits 0."""
    monkeypatch.setenv("IRONSERVE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    flag = tmp_path / "flag"
    flag.write_text("ready\n")
    monkeypatch.setenv("IRONSERVE_TEST_FLAG", str(flag))
    argv = ["run", "--site", str(SITE / "site.yml"), "--inventory", str(SITE / "inventory.yml"), "--plain"]

    assert cli.main([*argv, "--expect-no-change"]) == run.EXIT_CHANGED
    out = capsys.readouterr().out
    assert "stage two: h1: changed at task 'Mark this host done'" in out
    assert "stage two: h2: changed at task 'Mark this host done'" in out
    drifted = run.find_run(None)
    assert [(s.name, s.status) for s in drifted.stages] == [("one", "ok"), ("two", "ok")]
    assert sorted((c.host, c.task) for c in drifted.stages[1].changes) == [
        ("h1", "Mark this host done"),
        ("h2", "Mark this host done"),
    ]
    assert drifted.exit_code == run.EXIT_CHANGED
    assert "- drift check (--expect-no-change): 2 change(s)" in (drifted.folder / "run.md").read_text()
    assert run.RunRecord.load(drifted.folder / "run.json").stages[1].changes == drifted.stages[1].changes
    assert cli.main(["run", "--resume"]) == run.EXIT_OK  # every stage completed: nothing to resume
    capsys.readouterr()

    assert cli.main([*argv, "--expect-no-change"]) == run.EXIT_OK
    assert "changed at task" not in capsys.readouterr().out
    # Without the check, a run that changes things is a success as before.
    (tmp_path / "done").unlink()
    assert cli.main(argv) == run.EXIT_OK
    assert "changed at task" not in capsys.readouterr().out


def test_relative_inventory_paths_name_the_hosts_not_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("IRONSERVE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("IRONSERVE_TEST_FLAG", str(tmp_path / "flag"))
    monkeypatch.chdir(SITE)
    assert cli.main(["run", "--site", "site.yml", "--inventory", "inventory.yml", "--stages", "one", "--plain"]) == 0
    record = run.find_run(None)
    assert sorted(record.stages[0].hosts) == ["h1", "h2"]
    assert record.inventory == str(SITE / "inventory.yml")


def test_run_refuses_bad_input_before_running(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IRONSERVE_ARTIFACTS_DIR", str(tmp_path))
    assert cli.main(["run", "--site", str(SITE / "site.yml"), "--inventory", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert (
        cli.main(
            ["run", "--site", str(SITE / "site.yml"), "--inventory", str(SITE / "inventory.yml"), "--stages", "three"]
        )
        == 2
    )
    assert "no stage named 'three'" in capsys.readouterr().err
    assert cli.main(["run", "--resume", "--site", str(SITE / "site.yml")]) == 2
    assert "found no previous run" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_plain_log_gets_a_progress_line_while_a_stage_runs(tmp_path):
    import io
    import time

    from ironserve import progress

    out = io.StringIO()
    reporter = progress.PlainReporter(out, interval=0.05)
    record = StageRecord("storage", "storage.yml", None, status="ok", duration_s=1.0)
    reporter.stage_start(record)
    reporter.task_start(record, "Install the storage tools")
    reporter.host_result(record, "gpu-a", "Install the storage tools", "ok")
    time.sleep(0.3)  # a long task: no Ansible event, the log still moves
    reporter.stage_end(record)
    lines = out.getvalue().splitlines()
    ticks = [line for line in lines if line.startswith("   stage storage: ")]
    assert len(ticks) >= 3
    assert ticks[-1].endswith("task 'Install the storage tools'; ok=1")
    assert lines[-1].startswith("== stage storage: ok in 1.0 s")
    time.sleep(0.15)
    assert out.getvalue().splitlines() == lines  # nothing after the stage ended


# Planning a run is the run package's (the CLI only parses and prints): each case without the CLI.
def test_plan_selects_stages_with_the_runs_limit_and_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("IRONSERVE_ARTIFACTS_DIR", str(tmp_path))
    planned = run.plan(SITE / "site.yml", SITE / "inventory.yml", "two", None, "h1", True, False)
    assert [(stage.name, limit) for stage, limit in planned.stages] == [("two", "h1")]
    assert (planned.record.limit, planned.record.check, planned.record.diff) == ("h1", True, False)
    assert planned.record.inventory == str((SITE / "inventory.yml").resolve())
    assert [s.name for s, _ in run.plan(SITE / "site.yml", SITE / "inventory.yml", start="one").stages] == [
        "one",
        "two",
    ]
    assert not (tmp_path / "runs").exists()  # planning writes nothing


@pytest.mark.parametrize(
    ("inventory", "options", "message"),
    [
        (None, {}, "name the inventory to provision"),
        ("missing.yml", {}, "does not exist"),
        ("inventory.yml", {"resume": True}, "drop --inventory"),
        (None, {"resume": True, "limit": "h1"}, "drop --inventory, --stages, --from and --limit"),
        (None, {"resume": True}, "found no previous run"),
    ],
)
def test_plan_refuses_input_that_cannot_work(tmp_path, monkeypatch, inventory, options, message):
    monkeypatch.setenv("IRONSERVE_ARTIFACTS_DIR", str(tmp_path))
    with pytest.raises(run.RunInputError, match=message):
        run.plan(SITE / "site.yml", SITE / inventory if inventory else None, **options)


def test_plan_of_unknown_or_empty_stages_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("IRONSERVE_ARTIFACTS_DIR", str(tmp_path))
    with pytest.raises(stages.StageError, match="no stage named 'three'"):
        run.plan(SITE / "site.yml", SITE / "inventory.yml", "three")
    with pytest.raises(stages.StageError, match="names an empty stage"):
        run.plan(SITE / "site.yml", SITE / "inventory.yml", "")


def test_the_runner_gets_the_venvs_tools_first_and_this_process_keeps_its_path(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    tools = str(Path(paths.tool("ansible-playbook")).parent)
    assert run.runner_path().split(":")[0] == tools
    assert run.runner_path().split(":")[1:] == [p for p in ("/usr/bin", "/bin") if p != tools]
    assert os.environ["PATH"] == "/usr/bin:/bin"
