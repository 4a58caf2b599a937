"""Stopping the bench's own processes (QEMU, nspawn, the forward helpers, the bundle server) by pid.

A pid in a state file may belong to another process by the time it is read: every stop asks the caller's
``is_ours`` first, and again while it waits, so a reused pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path


def cmdline(pid: int | None) -> list[bytes]:
    """The process's argv, or [] when it is gone (a zombie's is empty too)."""
    if not pid:
        return []
    try:
        return [arg for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if arg]
    except OSError:
        return []


def names(pid: int | None, marker: str) -> bool:
    """True when one of the process's arguments contains ``marker`` (a lab folder, a helper's name)."""
    return any(marker.encode() in arg for arg in cmdline(pid))


def stop(pid: int | None, is_ours: Callable[[int], bool], grace: float, sig: int = signal.SIGTERM) -> None:
    """Send ``sig``, wait up to ``grace`` seconds for the process to end, then SIGKILL it and wait for that."""
    if not pid or not is_ours(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while is_ours(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not is_ours(pid):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while is_ours(pid):
        time.sleep(0.1)
