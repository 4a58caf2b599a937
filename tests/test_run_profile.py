"""The run profile (tests/bench/run_profile.py) sums each stage's task time per kind for its slowest host."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
import run_profile


def _event(folder: Path, number: int, host: str, action: str, task: str, seconds: float) -> None:
    events = folder / "artifacts" / "job-1" / "job_events"
    events.mkdir(parents=True, exist_ok=True)
    data = {"host": host, "task_action": action, "task": task, "duration": seconds}
    (events / f"{number}-x.json").write_text(json.dumps({"event": "runner_on_ok", "event_data": data}))


def test_task_time_is_summed_per_kind_for_the_slowest_host(tmp_path, capsys):
    run = tmp_path / "20261201-150000"
    stage = run / "gpu"
    _event(stage, 1, "gpu-a", "ansible.builtin.apt", "Install the driver at its pinned version", 400.0)
    _event(stage, 2, "gpu-a", "ironserve_initramfs", "Rebuild the initramfs", 58.0)
    _event(stage, 3, "gpu-a", "ansible.builtin.systemd_service", "Restart docker", 10.0)
    _event(stage, 4, "gpu-b", "ansible.builtin.apt", "Install the driver at its pinned version", 300.0)
    (run / "run.json").write_text(json.dumps({"stages": [{"name": "gpu", "duration_s": 500.0}]}))
    assert run_profile.main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "| gpu | 500 | 400 | 58 | 10 | 0 | 0 | 0 | 0 |" in out
    assert "- 400 s  gpu  gpu-a  Install the driver at its pinned version" in out
