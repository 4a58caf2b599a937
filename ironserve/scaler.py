"""``ironserve scaler``: Alertmanager's webhook in, the scale playbook out.

Why our own receiver and not Event-Driven Ansible: ansible-rulebook 1.3.2 (PyPI) needs drools_jpy, a Java runtime,
and the ``ansible.eda`` collection for its Alertmanager source, which the pinned ``ansible`` package does not carry
and Galaxy is not reachable from here or from an air-gapped site (docs/monitoring.md, "Scaling"). What this does is
small: read the webhook's firing scale alerts (ironserve.scaling.webhook_actions), keep one action per host at a time
and none within the cool-down after the last, and run ``playbooks/scale.yml`` through the same ansible-runner path as
``ironserve run`` (each action is a run with its record under the artifacts folder).

Every action is logged (one JSON line per action on stdout and in ``--log``) and counted: its own ``/metrics``
(``ironserve_scaler_actions_total``); the hosts count theirs in node_exporter's textfile (ironserve.scaling.textfile).
"""

from __future__ import annotations

import hmac
import json
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ironserve import paths, scaling

SCALE_PLAYBOOK = paths.REPO_ROOT / "playbooks" / "scale.yml"
WEBHOOK_PATH = "/alertmanager"
MAX_BODY = 1024 * 1024

# (host, direction) -> "ok" or "failed": runs the scale playbook for one action.
Action = Callable[[str, str], str]


def playbook_action(inventory: Path) -> Action:
    """Run playbooks/scale.yml for one host and direction, as ``ironserve run`` runs a stage."""

    def act(host: str, direction: str) -> str:
        from ironserve import run
        from ironserve.stages import Stage

        record = run.RunRecord(
            id=run.new_run_id(),
            started=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            inventory=str(inventory.resolve()),
            limit=None,
            check=False,
            diff=False,
            stages=[],
            site=str(SCALE_PLAYBOOK),
            extravars={"ironserve_scale_host": host, "ironserve_scale_direction": direction},
        )
        code = run.execute([(Stage("scale", SCALE_PLAYBOOK), None)], record, inventory, _QuietReporter())
        return "ok" if code == run.EXIT_OK else "failed"

    return act


class _QuietReporter:
    def stage_start(self, record) -> None: ...
    def task_start(self, record, task) -> None: ...
    def host_result(self, record, host, task, status) -> None: ...
    def stage_end(self, record) -> None: ...
    def run_end(self, record) -> None: ...


@dataclass
class Scaler:
    """Takes actions from webhooks, runs them one at a time, skips a host's within ``cooldown_seconds`` of its last."""

    act: Action
    cooldown_seconds: float
    log: Path | None = None
    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    last_action: dict[str, float] = field(default_factory=dict)
    # Alertmanager's webhook sends it as a bearer token (monitoring_scaler_token); None: no token asked for.
    token: str | None = None
    pending: queue.Queue = field(default_factory=queue.Queue)
    queued: set[tuple[str, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, payload: Any) -> list[tuple[str, str]]:
        """Queue the webhook's actions (one pending per host and direction); return those queued."""
        taken = []
        with self.lock:
            for action in scaling.webhook_actions(payload):
                if action not in self.queued:
                    self.queued.add(action)
                    self.pending.put(action)
                    taken.append(action)
        return taken

    def work_once(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Take the next action and run it (or skip it in its host's cool-down); return what was logged."""
        try:
            host, direction = self.pending.get(timeout=timeout)
        except queue.Empty:
            return None
        started = time.time()
        since = started - self.last_action.get(host, float("-inf"))
        if since < self.cooldown_seconds:
            result = "cooling_down"
        else:
            try:
                result = self.act(host, direction)
            except Exception as exc:
                result = f"failed: {exc}"
            self.last_action[host] = time.time()
        with self.lock:
            self.queued.discard((host, direction))
            key = (host, direction, result.split(":")[0])
            self.counts[key] = self.counts.get(key, 0) + 1
        entry = {
            "at": round(started, 3),
            "host": host,
            "direction": direction,
            "result": result,
            "seconds": round(time.time() - started, 2),
        }
        line = json.dumps(entry)
        print(line, flush=True)
        if self.log:
            with self.log.open("a") as out:
                out.write(line + "\n")
        return entry

    def work_forever(self) -> None:
        while True:
            self.work_once()

    def metrics(self) -> str:
        lines = [
            "# HELP ironserve_scaler_actions_total Scale actions the receiver took, by host, direction and result.",
            "# TYPE ironserve_scaler_actions_total counter",
        ]
        with self.lock:
            for (host, direction, result), count in sorted(self.counts.items()):
                lines.append(
                    f'ironserve_scaler_actions_total{{host="{host}",direction="{direction}",result="{result}"}} {count}'
                )
            lines += [
                "# HELP ironserve_scaler_pending_actions Actions waiting for the one before them.",
                "# TYPE ironserve_scaler_pending_actions gauge",
                f"ironserve_scaler_pending_actions {len(self.queued)}",
            ]
        return "\n".join(lines) + "\n"


def handler(scaler: Scaler) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: str, kind: str = "text/plain; version=0.0.4") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, scaler.metrics())
            elif self.path == "/-/healthy":
                self._send(200, "ok\n")
            else:
                self._send(404, "not found\n")

        def do_POST(self) -> None:
            if self.path != WEBHOOK_PATH:
                self._send(404, f"post Alertmanager's webhooks to {WEBHOOK_PATH}\n")
                return
            if scaler.token is not None:
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {scaler.token}".encode()):
                    self._send(401, "a bearer token is required (monitoring_scaler_token)\n")
                    return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, "too large\n")
                return
            try:
                taken = scaler.receive(json.loads(self.rfile.read(length) or b"null"))
            except (ValueError, scaling.ScaleError) as exc:
                self._send(400, f"{exc}\n")
                return
            self._send(200, json.dumps({"queued": taken}) + "\n", "application/json")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            return  # the actions are logged; Alertmanager's posts every group interval are not worth a line

    return Handler


def server(scaler: Scaler, address: str, port: int) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((address, port), handler(scaler))


class TokenError(ValueError):
    """A token file that cannot be used; the message says why."""


def read_token(path: Path) -> str:
    """The bearer token in ``path``: one line, in a file only its owner reads (as the site's other secrets)."""
    try:
        mode = path.stat().st_mode & 0o077
        token = path.read_text().strip()
    except OSError as exc:
        raise TokenError(f"--token-file {path}: {exc.strerror}") from exc
    if mode:
        raise TokenError(f"--token-file {path} is readable by others: chmod 600 it")
    if len(token) < 16 or any(c.isspace() for c in token):
        raise TokenError(f"--token-file {path}: give one token of 16 or more characters, without spaces")
    return token


def serve(
    inventory: Path, address: str, port: int, cooldown_seconds: float, log: Path | None, token: str | None = None
) -> int:
    """Run the receiver until interrupted."""
    scaler = Scaler(playbook_action(inventory), cooldown_seconds, log, token=token)
    threading.Thread(target=scaler.work_forever, daemon=True, name="scale-actions").start()
    httpd = server(scaler, address, port)
    print(f"ironserve scaler: Alertmanager's webhook at http://{address}:{port}{WEBHOOK_PATH}", file=sys.stderr)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0
