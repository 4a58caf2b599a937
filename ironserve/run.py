"""Run stages with ansible-runner and keep a record of each run.

Each stage is one ansible-runner job with its own artifacts folder. The run stops at the first stage that
fails; its record (JSON for machines, Markdown for people) names the host, task and message of each
failure, and ``--resume`` reads it to continue from that stage with the hosts that did not complete it.
The fan-out over hosts is Ansible's (forks): this module never runs hosts in parallel itself.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ironserve import paths
from ironserve.stages import Stage

EXIT_OK = 0
EXIT_HOST_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_UNREACHABLE = 4
EXIT_CHANGED = 5  # --expect-no-change: every stage passed, and a task changed something

RUN_RECORD = "run.json"
RUN_MARKDOWN = "run.md"


def artifacts_dir() -> Path:
    explicit = os.environ.get("IRONSERVE_ARTIFACTS_DIR")
    return Path(explicit) if explicit else paths.REPO_ROOT / "artifacts"


@dataclass
class Failure:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class Change:
    host: str
    task: str


@dataclass
class StageRecord:
    name: str
    playbook: str
    limit: str | None
    status: str = "not_run"  # ok | failed | unreachable | not_run
    started: str | None = None
    duration_s: float | None = None
    hosts: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    artifacts: str | None = None
    changes: list[Change] = field(default_factory=list)  # host and task of each result that changed something


@dataclass
class RunRecord:
    id: str
    started: str
    inventory: str
    limit: str | None
    check: bool
    diff: bool
    stages: list[StageRecord]
    site: str = ""
    resumed_from: str | None = None
    finished: str | None = None
    exit_code: int | None = None
    hardware_reports: dict[str, str] = field(default_factory=dict)
    validations: dict[str, Any] = field(default_factory=dict)
    # Variables given to every stage's playbook (the scale playbook's host and direction).
    extravars: dict[str, Any] = field(default_factory=dict)
    # A drift check: the run fails (EXIT_CHANGED) where a task changed something on a host.
    expect_no_change: bool = False

    @property
    def folder(self) -> Path:
        return artifacts_dir() / "runs" / self.id

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / RUN_RECORD).write_text(json.dumps(asdict(self), indent=2) + "\n")
        (self.folder / RUN_MARKDOWN).write_text(markdown(self))

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        data = json.loads(path.read_text())
        stages = [
            StageRecord(
                **{
                    **s,
                    "failures": [Failure(**f) for f in s["failures"]],
                    "changes": [Change(**c) for c in s.get("changes", [])],
                }
            )
            for s in data.pop("stages")
        ]
        return cls(stages=stages, **data)


def runs() -> list[Path]:
    folder = artifacts_dir() / "runs"
    return sorted(folder.glob(f"*/{RUN_RECORD}")) if folder.exists() else []


def find_run(run_id: str | None) -> RunRecord | None:
    records = runs()
    if run_id:
        records = [r for r in records if r.parent.name == run_id]
    return RunRecord.load(records[-1]) if records else None


def new_run_id() -> str:
    now = datetime.now(UTC)
    run_id = now.strftime("%Y%m%d-%H%M%S")
    while (artifacts_dir() / "runs" / run_id).exists():  # two runs in one second
        now = datetime.fromtimestamp(now.timestamp() + 1, UTC)
        run_id = now.strftime("%Y%m%d-%H%M%S")
    return run_id


def exit_code(record: RunRecord) -> int:
    failures = [f for s in record.stages for f in s.failures]
    if any(not f.unreachable for f in failures):
        return EXIT_HOST_FAILED
    if failures:
        return EXIT_UNREACHABLE
    if record.expect_no_change and any(s.changes for s in record.stages):
        return EXIT_CHANGED
    return EXIT_OK


def resume_plan(previous: RunRecord) -> list[tuple[str, str | None]]:
    """(stage name, limit) to run so that ``previous`` completes: the first stage that did not complete,
    limited to the hosts that did not complete it, then the stages after it with the run's own limit."""
    for index, stage in enumerate(previous.stages):
        if stage.status == "ok":
            continue
        redo = sorted({f.host for f in stage.failures})
        first_limit = ",".join(redo) if redo else stage.limit
        return [(stage.name, first_limit)] + [(s.name, previous.limit) for s in previous.stages[index + 1 :]]
    return []


class RunInputError(ValueError):
    """A run that cannot be planned from what was given; the message names the option and the fix."""


@dataclass
class RunPlan:
    """What ``ironserve run`` will do: the stages (each with its host limit), the record it starts, the inventory;
    or, with ``nothing_to_do``, why nothing runs."""

    stages: list[tuple[Stage, str | None]]
    record: RunRecord | None
    inventory: Path | None
    nothing_to_do: str = ""


def plan(
    site: Path,
    inventory: Path | None,
    stage_names: str | None = None,
    start: str | None = None,
    limit: str | None = None,
    check: bool = False,
    diff: bool = False,
    resume: bool = False,
    expect_no_change: bool = False,
) -> RunPlan:
    """Plan a run of ``site``'s stages: the named ones (``stage_names``, comma-separated), those from ``start``, or
    all; with ``resume``, what completes the latest run, with its own inventory, hosts and mode; with
    ``expect_no_change``, a drift check that fails where any task changes something. Raises
    RunInputError (or stages.StageError) for input that cannot work, before anything runs."""
    from ironserve import stages

    resumed_from = None
    if resume:
        if stage_names is not None or start or limit or inventory:
            raise RunInputError(
                "--resume takes the inventory, stages and hosts from the previous run; drop --inventory, --stages, "
                "--from and --limit"
            )
        previous = find_run(None)
        if previous is None:
            raise RunInputError(f"--resume found no previous run under {artifacts_dir() / 'runs'}")
        site = Path(previous.site) if previous.site else site
        available = {s.name: s for s in stages.from_site(site)}
        remaining = resume_plan(previous)
        if not remaining:
            return RunPlan([], None, None, f"run {previous.id} completed every stage; nothing to resume")
        missing = [name for name, _ in remaining if name not in available]
        if missing:
            raise stages.StageError(f"run {previous.id} had stage(s) {', '.join(missing)} that {site} no longer has")
        selected = [(available[name], host_limit) for name, host_limit in remaining]
        inventory, limit, check, diff = Path(previous.inventory), previous.limit, previous.check, previous.diff
        expect_no_change = expect_no_change or previous.expect_no_change
        resumed_from = previous.id
        if not inventory.exists():
            raise RunInputError(f"run {previous.id} used inventory {inventory}, which no longer exists")
    else:
        if inventory is None:
            # No default: a run without one would provision whatever a default names (the lab's, on a site).
            raise RunInputError("name the inventory to provision: ironserve run --inventory PATH")
        if not inventory.exists():
            raise RunInputError(f"inventory {inventory} does not exist")
        available = {s.name: s for s in stages.from_site(site)}
        only = stages.parse_names(stage_names) if stage_names is not None else None
        selected = [(stage, limit) for stage in stages.select(list(available.values()), only, start)]
    record = RunRecord(
        id=new_run_id(),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        inventory=str(inventory.resolve()),
        limit=limit,
        check=check,
        diff=diff,
        stages=[],
        site=str(site.resolve()),
        resumed_from=resumed_from,
        expect_no_change=expect_no_change,
    )
    return RunPlan(selected, record, inventory)


class Reporter(Protocol):
    def stage_start(self, record: StageRecord) -> None: ...
    def task_start(self, record: StageRecord, task: str) -> None: ...
    def host_result(self, record: StageRecord, host: str, task: str, status: str) -> None: ...
    def stage_end(self, record: StageRecord) -> None: ...
    def run_end(self, record: RunRecord) -> None: ...


_RESULT_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped")
_COUNTERS = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable", "skipped": "skipped"}


def _message(result: dict) -> str:
    for key in ("msg", "stderr", "reason"):
        value = result.get(key)
        if value:
            return str(value).strip()
    return json.dumps(result)[:500]


def runner_path() -> str:
    """The PATH ansible-runner's job gets (this process's is left alone): the folder of the ansible-playbook beside
    this Python first (an unactivated venv), then this process's PATH."""
    tools = str(Path(paths.tool("ansible-playbook")).parent)
    inherited = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry and entry != tools]
    return os.pathsep.join([tools, *inherited])


def run_stage(stage: Stage, record: StageRecord, run: RunRecord, inventory: Path, reporter: Reporter) -> None:
    import ansible_runner  # imported here: the lab and bundle commands do not need it

    record.started = datetime.now(UTC).isoformat(timespec="seconds")
    record.artifacts = str(run.folder / record.name)
    Path(record.artifacts).mkdir(parents=True, exist_ok=True)
    reporter.stage_start(record)

    def on_event(event: dict) -> bool:
        data = event.get("event_data", {})
        kind = event.get("event", "")
        if kind == "playbook_on_task_start":
            reporter.task_start(record, data.get("task", ""))
        elif kind in _RESULT_EVENTS and "host" in data:
            status = kind.removeprefix("runner_on_")
            if status == "ok" and data.get("res", {}).get("changed"):
                status = "changed"
                record.changes.append(Change(host=data["host"], task=data.get("task", "")))
            if status == "failed" and data.get("ignore_errors"):
                status = "ignored"
            if status in ("failed", "unreachable"):
                record.failures.append(
                    Failure(
                        host=data["host"],
                        task=data.get("task", ""),
                        message=_message(data.get("res", {})),
                        unreachable=status == "unreachable",
                    )
                )
            reporter.host_result(record, data["host"], data.get("task", ""), status)
        return True

    started = time.monotonic()
    cmdline = " ".join(flag for flag, wanted in (("--check", run.check), ("--diff", run.diff)) if wanted)
    result = ansible_runner.run(
        private_data_dir=record.artifacts,
        project_dir=str(paths.REPO_ROOT),
        playbook=str(stage.playbook),
        # An absolute path: ansible-runner takes any other string as inventory content.
        inventory=str(inventory.resolve()),
        limit=record.limit,
        extravars=run.extravars or None,
        cmdline=cmdline or None,
        envvars={
            "PATH": runner_path(),
            "ANSIBLE_CONFIG": str(paths.REPO_ROOT / "ansible.cfg"),
            "IRONSERVE_ARTIFACTS_DIR": str(artifacts_dir()),
            "ANSIBLE_NOCOLOR": "1",
        },
        event_handler=on_event,
        quiet=True,
    )
    record.duration_s = round(time.monotonic() - started, 1)
    stats = result.stats or {}
    hosts = sorted({h for counter in stats.values() if isinstance(counter, dict) for h in counter})
    record.hosts = {h: {name: stats.get(key, {}).get(h, 0) for key, name in _COUNTERS.items()} for h in hosts}
    if record.failures:
        record.status = "failed" if any(not f.unreachable for f in record.failures) else "unreachable"
    elif result.status != "successful":
        record.status = "failed"
        record.failures.append(
            Failure(
                host="-",
                task="-",
                message=f"ansible-playbook ended {result.status} (rc {result.rc}); see {record.artifacts}/artifacts",
            )
        )
    else:
        record.status = "ok"
    reporter.stage_end(record)


def collect_reports(run: RunRecord) -> None:
    hardware = artifacts_dir() / "hardware"
    run.hardware_reports = {p.stem: str(p) for p in sorted(hardware.glob("*.md"))} if hardware.exists() else {}
    validation = artifacts_dir() / "validation"
    if validation.exists():
        run.validations = {p.stem: json.loads(p.read_text()) for p in sorted(validation.glob("*.json"))}


def execute(stages: list[tuple[Stage, str | None]], run: RunRecord, inventory: Path, reporter: Reporter) -> int:
    """Run the stages in order, stopping at the first that fails; save the record after every stage."""
    run.stages = [StageRecord(name=s.name, playbook=str(s.playbook), limit=limit) for s, limit in stages]
    run.save()
    for (stage, _), record in zip(stages, run.stages, strict=True):
        run_stage(stage, record, run, inventory, reporter)
        run.save()
        if record.status != "ok":
            break
    collect_reports(run)
    run.finished = datetime.now(UTC).isoformat(timespec="seconds")
    run.exit_code = exit_code(run)
    run.save()
    reporter.run_end(run)
    return run.exit_code


def markdown(run: RunRecord) -> str:
    out = [f"# ironserve run {run.id}", ""]
    out.append(f"- inventory: `{run.inventory}`" + (f", limit `{run.limit}`" if run.limit else ""))
    out.append(f"- started {run.started}, finished {run.finished or '(running)'}; exit code {run.exit_code}")
    if run.check or run.diff:
        out.append(f"- mode: {' '.join(m for m, on in (('check', run.check), ('diff', run.diff)) if on)}")
    if run.resumed_from:
        out.append(f"- resumes run {run.resumed_from}")
    if run.expect_no_change:
        changed = sum(len(s.changes) for s in run.stages)
        out.append(f"- drift check (--expect-no-change): {changed} change(s)")
    out += ["", "| stage | status | duration | hosts | limit |", "|---|---|---|---|---|"]
    for stage in run.stages:
        duration = f"{stage.duration_s} s" if stage.duration_s is not None else "-"
        out.append(f"| {stage.name} | {stage.status} | {duration} | {len(stage.hosts)} | {stage.limit or 'all'} |")
    for stage in run.stages:
        if not stage.hosts:
            continue
        out += [
            "",
            f"## {stage.name}",
            "",
            "| host | ok | changed | failed | unreachable | skipped |",
            "|---|---|---|---|---|---|",
        ]
        for host, counts in stage.hosts.items():
            out.append(
                f"| {host} | {counts['ok']} | {counts['changed']} | {counts['failed']} | "
                f"{counts['unreachable']} | {counts['skipped']} |"
            )
        if stage.changes:
            out += ["", "Changed:", ""] + [f"- **{c.host}**, task *{c.task}*" for c in stage.changes]
        if stage.failures:
            out += ["", "Failures:", ""]
            out += [
                f"- **{f.host}**, task *{f.task}*{' (unreachable)' if f.unreachable else ''}: "
                f"{f.message.splitlines()[0] if f.message else ''}"
                for f in stage.failures
            ]
    if run.hardware_reports:
        out += ["", "## Hardware reports", ""] + [f"- {host}: `{path}`" for host, path in run.hardware_reports.items()]
    if run.validations:
        out += ["", "## Validation results", ""]
        out += [f"- {name}: `{json.dumps(value)[:200]}`" for name, value in run.validations.items()]
    return "\n".join(out) + "\n"


def summary(run: RunRecord) -> list[str]:
    """One line per failure, for the end of a run: host, task, message; in a drift check, one per change too."""
    lines = []
    for stage in run.stages:
        if run.expect_no_change:
            lines += [f"stage {stage.name}: {c.host}: changed at task '{c.task}'" for c in stage.changes]
        for f in stage.failures:
            first = f.message.splitlines()[0] if f.message else ""
            lines.append(
                f"stage {stage.name}: {f.host}: {'unreachable' if f.unreachable else 'failed'} "
                f"at task '{f.task}': {first}"
            )
    return lines
