"""A client on a lab segment for the bench's scenario tests: a network namespace this machine makes, joined to the
lab's bridge through a veth pair, with one address there (and optional routes through lab machines). The machine
running the tests gets no address on the segment and routes nothing into it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextmanager
def client_namespace(bridge: str, address: str, routes: dict[str, str] | None = None) -> Iterator[str]:
    """Yield the namespace's name; ``routes``: destination -> gateway on the segment. Removed at the end."""
    tag = os.getpid() % 100000
    namespace, outside, inside = f"ironserve-client-{tag}", f"ifcl{tag}h", f"ifcl{tag}n"
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", outside, "master", bridge, "up")
        _ip("-n", namespace, "addr", "add", address, "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        for destination, gateway in (routes or {}).items():
            _ip("-n", namespace, "route", "add", destination, "via", gateway)
        yield namespace
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def nic(namespace: str) -> str:
    """The namespace's own end of its veth pair."""
    return namespace.replace("ironserve-client-", "ifcl") + "n"


def run_python(namespace: str, script: str, timeout: float = 60) -> str:
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def connect(namespace: str, address: str, port: int) -> str:
    """What a TCP connection from the client gets: 'open', 'refused' (a reset: nothing listens) or 'timeout' (the
    packet was dropped on the way, as a firewall drops it)."""
    return run_python(
        namespace,
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({address!r}, {port}), timeout=3).close(); print('open')\n"
        "except ConnectionRefusedError:\n    print('refused')\n"
        "except TimeoutError:\n    print('timeout')",
    )
