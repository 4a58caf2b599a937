"""How a run shows itself: live (rich) on a terminal, plain lines in a log, JSON lines for pipelines."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import TextIO

from ironserve.run import RunRecord, StageRecord, summary

_MARK = {"ok": "ok", "failed": "FAILED", "unreachable": "UNREACHABLE", "not_run": "not run"}


# A log that says nothing for minutes looks hung: while a stage runs, a line at least this often.
PROGRESS_SECONDS = 30.0


class PlainReporter:
    """One line per stage start and end and per failure, and while a stage runs a progress line every
    ``interval`` seconds (the task it is in, the results so far): readable in CI logs."""

    def __init__(self, out: TextIO | None = None, interval: float = PROGRESS_SECONDS):
        self.out = out or sys.stdout
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._stage = ""
        self._task = ""
        self._started = 0.0
        self._counts: dict[str, int] = defaultdict(int)

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def progress_line(self) -> str:
        with self._lock:
            counts = " ".join(f"{k}={v}" for k, v in sorted(self._counts.items()) if v) or "no results yet"
            elapsed = time.monotonic() - self._started
            return f"   stage {self._stage}: {elapsed:.0f} s, task '{self._task or 'starting'}'; {counts}"

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._say(self.progress_line())

    def stage_start(self, record: StageRecord) -> None:
        self._say(f"== stage {record.name}" + (f" (limit {record.limit})" if record.limit else ""))
        with self._lock:
            self._stage, self._task, self._started = record.name, "", time.monotonic()
            self._counts.clear()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def task_start(self, record: StageRecord, task: str) -> None:
        with self._lock:
            self._task = task

    def host_result(self, record: StageRecord, host: str, task: str, status: str) -> None:
        with self._lock:
            self._counts[status] += 1
        if status in ("failed", "unreachable"):
            self._say(f"   {host}: {status} at task '{task}'")

    def stage_end(self, record: StageRecord) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
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
