"""How a run shows itself: live (rich) on a terminal, plain lines in a log, JSON lines for pipelines."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from datetime import UTC, datetime
from typing import TextIO

from ironserve.run import RunRecord, StageRecord, summary

_MARK = {"ok": "ok", "failed": "FAILED", "unreachable": "UNREACHABLE", "not_run": "not run"}


class PlainReporter:
    """One line per stage start and end and per failure: readable in CI logs."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def stage_start(self, record: StageRecord) -> None:
        self._say(f"== stage {record.name}" + (f" (limit {record.limit})" if record.limit else ""))

    def task_start(self, record: StageRecord, task: str) -> None:
        pass

    def host_result(self, record: StageRecord, host: str, task: str, status: str) -> None:
        if status in ("failed", "unreachable"):
            self._say(f"   {host}: {status} at task '{task}'")

    def stage_end(self, record: StageRecord) -> None:
        counts = ", ".join(
            f"{host} ok={c['ok']} changed={c['changed']} failed={c['failed']} unreachable={c['unreachable']}"
            for host, c in record.hosts.items()
        )
        self._say(f"== stage {record.name}: {_MARK[record.status]} in {record.duration_s} s; {counts}")

    def run_end(self, record: RunRecord) -> None:
        for line in summary(record):
            self._say(line)
        self._say(f"run {record.id}: exit {record.exit_code}; record {record.folder}/run.md")


class JsonReporter:
    """One JSON object per line: stage_start, task_start, host_result, stage_end, run_end."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout

    def _emit(self, event: str, **fields) -> None:
        fields = {"event": event, "time": datetime.now(UTC).isoformat(timespec="milliseconds"), **fields}
        print(json.dumps(fields), file=self.out, flush=True)

    def stage_start(self, record: StageRecord) -> None:
        self._emit("stage_start", stage=record.name, limit=record.limit)

    def task_start(self, record: StageRecord, task: str) -> None:
        self._emit("task_start", stage=record.name, task=task)

    def host_result(self, record: StageRecord, host: str, task: str, status: str) -> None:
        self._emit("host_result", stage=record.name, host=host, task=task, status=status)

    def stage_end(self, record: StageRecord) -> None:
        self._emit(
            "stage_end",
            stage=record.name,
            status=record.status,
            duration_s=record.duration_s,
            hosts=record.hosts,
            failures=[f.__dict__ for f in record.failures],
        )

    def run_end(self, record: RunRecord) -> None:
        self._emit("run_end", run=record.id, exit_code=record.exit_code, record=str(record.folder / "run.json"))


class RichReporter:
    """A live table: one line per stage, and per host of the running stage its counts and current task."""

    def __init__(self, stage_names: list[str]):
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self.stages = dict.fromkeys(stage_names, "waiting")
        self.durations: dict[str, float | None] = {}
        self.current: StageRecord | None = None
        self.task = ""
        self.hosts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def _render(self):
        from rich.table import Table

        table = Table(show_header=True, header_style="bold", box=None)
        table.add_column("stage")
        table.add_column("status")
        table.add_column("progress")
        for name, state in self.stages.items():
            style = {"ok": "green", "FAILED": "red", "UNREACHABLE": "red", "running": "yellow"}.get(state, "dim")
            duration = self.durations.get(name)
            table.add_row(name, f"[{style}]{state}[/]", f"{duration} s" if duration is not None else "")
            if self.current is not None and name == self.current.name and state == "running":
                table.add_row("", "[dim]task[/]", self.task)
                for host, counts in sorted(self.hosts.items()):
                    table.add_row(f"  {host}", "", " ".join(f"{k}={v}" for k, v in counts.items() if v) or "waiting")
        return table

    def _refresh(self) -> None:
        self.live.update(self._render())

    def stage_start(self, record: StageRecord) -> None:
        self.current, self.task = record, ""
        self.hosts.clear()
        self.stages[record.name] = "running"
        self._refresh()

    def task_start(self, record: StageRecord, task: str) -> None:
        self.task = task
        self._refresh()

    def host_result(self, record: StageRecord, host: str, task: str, status: str) -> None:
        self.hosts[host][status] += 1
        self._refresh()

    def stage_end(self, record: StageRecord) -> None:
        self.stages[record.name] = _MARK[record.status] if record.status != "ok" else "ok"
        self.durations[record.name] = record.duration_s
        self._refresh()

    def run_end(self, record: RunRecord) -> None:
        self.live.stop()
        for line in summary(record):
            self.console.print(f"[red]{line}[/]")
        self.console.print(f"run {record.id}: exit {record.exit_code}; record {record.folder}/run.md")
