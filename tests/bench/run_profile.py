"""Where a run's time went: per stage, per kind of task and the slowest tasks, from ansible-runner's job events.

    python tests/bench/run_profile.py [artifacts/runs/RUN]   (default: the latest run)

Reads each stage's ``artifacts/*/job_events/*.json`` (ansible-runner writes one per event, with the task's
module and its duration per host) and prints a Markdown table: stage wall time from the run record, then per
kind (packages, initramfs, services, reboots, waits, other) the summed task seconds of the slowest host.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

KINDS = {
    "packages": ("ansible.builtin.apt", "ansible.builtin.package", "ansible.builtin.dpkg_selections"),
    "initramfs": ("ironserve_initramfs",),
    "services": ("ansible.builtin.systemd_service", "ansible.builtin.systemd", "ansible.builtin.service"),
    "reboots": ("ansible.builtin.reboot",),
    "waits": ("ansible.builtin.wait_for", "ansible.builtin.uri"),
    "facts": ("ansible.builtin.setup", "ansible.builtin.gather_facts", "ironserve_probe"),
}
RESULTS = {"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"}


def kind_of(action: str, task: str) -> str:
    if "initramfs" in task.lower():
        return "initramfs"
    for kind, actions in KINDS.items():
        if action in actions:
            return kind
    return "other"


def stage_profile(folder: Path) -> tuple[dict[str, float], list[tuple[float, str, str]]]:
    per_host: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    tasks: list[tuple[float, str, str]] = []
    for path in sorted(folder.glob("artifacts/*/job_events/*.json")):
        event = json.loads(path.read_text())
        if event.get("event") not in RESULTS:
            continue
        data = event.get("event_data", {})
        seconds = float(data.get("duration") or 0.0)
        # resolved_action is the full name ("gather_facts": "ansible.builtin.gather_facts"); older events lack it.
        kind = kind_of(data.get("resolved_action") or data.get("task_action", ""), data.get("task", ""))
        per_host[data.get("host", "?")][kind] += seconds
        tasks.append((seconds, data.get("host", "?"), data.get("task", "")))
    slowest = max(per_host.values(), key=lambda kinds: sum(kinds.values()), default={})
    return dict(slowest), sorted(tasks, reverse=True)[:5]


def main(argv: list[str]) -> int:
    runs = Path("artifacts/runs")
    run = Path(argv[0]) if argv else max((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.name)
    record = json.loads((run / "run.json").read_text())
    kinds = ["packages", "initramfs", "services", "reboots", "waits", "facts", "other"]
    print(f"run {run.name}\n")
    print("| stage | wall s | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    slow: list[tuple[float, str, str, str]] = []
    for stage in record["stages"]:
        profile, tasks = stage_profile(run / stage["name"])
        cells = " | ".join(f"{profile.get(k, 0.0):.0f}" for k in kinds)
        print(f"| {stage['name']} | {stage.get('duration_s', 0):.0f} | {cells} |")
        slow += [(s, stage["name"], h, t) for s, h, t in tasks]
    print("\nslowest tasks (seconds, stage, host, task):")
    for seconds, stage, host, task in sorted(slow, reverse=True)[:12]:
        print(f"- {seconds:.0f} s  {stage}  {host}  {task}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
