"""Stopping the bench's processes by pid: only ours, TERM first, KILL when TERM is ignored."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from ironserve.lab import processes

SLEEPER = """
import signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def _start(mode: str, marker: str) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", SLEEPER, mode, marker], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"  # its SIGTERM handler is set
    return child


def _ours(marker: str):
    return lambda pid: processes.names(pid, marker)


def test_term_stops_a_process_that_is_ours(tmp_path):
    marker = str(tmp_path / "lab-a")
    child = _start("obey", marker)
    processes.stop(child.pid, _ours(marker), grace=5)
    assert child.wait(timeout=5) == -signal.SIGTERM


def test_kill_follows_when_term_is_ignored(tmp_path):
    marker = str(tmp_path / "lab-b")
    child = _start("ignore", marker)
    started = time.monotonic()
    processes.stop(child.pid, _ours(marker), grace=0.5)
    assert child.wait(timeout=5) == -signal.SIGKILL
    assert time.monotonic() - started < 5


def test_a_process_that_is_not_ours_is_left_alone(tmp_path):
    child = _start("obey", str(tmp_path / "someone-else"))
    try:
        processes.stop(child.pid, _ours(str(tmp_path / "lab-c")), grace=0.5)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_no_pid_and_a_gone_pid_are_nothing_to_stop():
    processes.stop(None, lambda pid: True, grace=0.1)
    assert processes.cmdline(None) == []
    assert processes.cmdline(2**22 + 11) == []
