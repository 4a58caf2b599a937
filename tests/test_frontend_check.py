"""keepalived's tracked checks (roles/service_frontend's ironserve-frontend-check) as a host gets them: rendered by
Ansible, then run here against a local engine and HAProxy stats socket of this test's own (127.0.0.1 and a socket in
the test's folder), healthy and not."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from role_templates import REPO, render

ROLE = REPO / "roles" / "service_frontend"
STATS_HEADER = "# pxname,svname,status,weight\n"


@pytest.fixture(scope="module")
def check(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frontend-check")
    program = folder / "ironserve-frontend-check"
    variables = {"service_frontend_inference_record": str(folder / "ready.json")}
    vars_files = (ROLE / "defaults/main.yml", ROLE / "vars/Debian.yml")
    render(folder, {ROLE / "templates" / "ironserve-frontend-check.py.j2": program}, variables, vars_files)
    program.chmod(0o755)
    return program


@pytest.fixture
def engine(check):
    """A stand-in engine on 127.0.0.1 whose /health answers with the status in ``answer["status"]``; the check's
    record names it."""
    answer = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(answer["status"] if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    (check.parent / "ready.json").write_text(json.dumps({"url": url, "health": url + "/health"}))
    yield answer
    server.shutdown()
    server.server_close()


def _run(check: Path, mode: str, *python_options: str) -> subprocess.CompletedProcess:
    # Through its own first line (/usr/bin/python3 -IS), as keepalived starts it, unless options are given.
    argv = ["/usr/bin/python3", "-IS", *python_options, str(check), mode] if python_options else [str(check), mode]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_engine_check_passes_only_on_a_200_from_the_engines_health_url(check, engine):
    assert _run(check, "engine").returncode == 0
    engine["status"] = 503
    assert _run(check, "engine").returncode == 1


def test_engine_check_fails_where_nothing_answers_or_the_record_is_missing(check, engine):
    # Bound and never listening, kept for the test: refused, and no other process can take the port meanwhile.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        record = check.parent / "ready.json"
        record.write_text(json.dumps({"health": f"http://127.0.0.1:{silent.getsockname()[1]}/health"}))
        assert _run(check, "engine").returncode == 1
    record.unlink()
    assert _run(check, "engine").returncode == 1


def _frontend_module(check: Path, stats_socket: Path):
    spec = importlib.util.spec_from_loader("frontend_check", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(check.read_text(), str(check), "exec"), module.__dict__)  # noqa: S102 - the rendered program itself
    module.STATS_SOCKET = str(stats_socket)
    return module


@pytest.mark.parametrize(
    ("rows", "healthy"),
    [
        ("engines,FRONTEND,OPEN,\nengines,gpu01,UP,1\nengines,gpu02,DOWN,1\nengines,BACKEND,UP,1\n", True),
        ("engines,FRONTEND,OPEN,\nengines,gpu01,DOWN,1\nengines,gpu02,MAINT,1\nengines,BACKEND,DOWN,0\n", False),
        ("stats,FRONTEND,OPEN,\nother,gpu01,UP,1\n", False),
    ],
)
def test_frontend_check_needs_an_engine_marked_up_by_haproxy(check, tmp_path, rows, healthy):
    stats_socket = tmp_path / "admin.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(stats_socket))
        server.listen(1)

        def answer():
            conn, _ = server.accept()
            with conn:
                assert conn.recv(1024) == b"show stat\n"
                conn.sendall((STATS_HEADER + rows).encode())

        threading.Thread(target=answer, daemon=True).start()
        assert _frontend_module(check, stats_socket).frontend() is healthy


def test_frontend_check_imports_no_http_or_tls_modules(check):
    """keepalived starts it every few seconds for the host's whole life: each module imported is paid each time."""
    imported = _run(check, "frontend", "-X", "importtime").stderr
    names = {line.rsplit("|", 1)[-1].strip() for line in imported.splitlines() if line.startswith("import time:")}
    assert "socket" in names
    assert not names & {"urllib.request", "http.client", "ssl", "email", "json"}, sorted(names)
