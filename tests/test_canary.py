"""The monitoring role's canary (roles/monitoring/files/ironserve-canary.py) against the stand-in engine on
loopback: it records the deployment's golden answer once, finds the same answer again, reports drift when the
engine's answer changes, records anew when the deployment changes, and says so when the engine does not answer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from loopback import free_port

REPO = Path(__file__).resolve().parents[1]
CANARY = REPO / "roles" / "monitoring" / "files" / "ironserve-canary.py"
SERVER = REPO / "tests" / "fixtures" / "standin-engine" / "server.py"
KEY = "is-0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def site(tmp_path):
    """A stand-in engine with its record, key file and the canary's configuration; ``engine(word)`` (re)starts it."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "ready.json").write_text(json.dumps({"url": url, "model": "standin", "serves_api": True}))
    (tmp_path / "compose.yml").write_text("image: standin@sha256:aaaa\n")
    (tmp_path / "api-key.env").write_text(f"IRONSERVE_API_KEY={KEY}\n")
    config = {
        "record": str(tmp_path / "ready.json"),
        "key_file": str(tmp_path / "api-key.env"),
        "prompt": "boiling point?",
        "max_tokens": 4,
        "timeout": 10,
        "golden": str(tmp_path / "canary" / "golden.json"),
        "textfile": str(tmp_path / "textfile" / "ironserve_canary.prom"),
        "deployment_files": [str(tmp_path / "compose.yml"), str(tmp_path / "ready.json")],
    }
    (tmp_path / "canary.json").write_text(json.dumps(config))
    running: list[subprocess.Popen] = []

    def engine(word: str | None = "ok") -> None:
        for process in running:
            process.kill()
            process.wait()
        running.clear()
        if word is None:
            return
        env = {
            "MODEL_DIR": str(tmp_path / "model"),
            "IRONSERVE_API_KEY": KEY,
            "IRONSERVE_HOST": "127.0.0.1",
            "IRONSERVE_PORT": str(port),
            "SERVED_MODEL_NAME": "standin",
            "STANDIN_ANSWER_WORD": word,
        }
        running.append(subprocess.Popen([sys.executable, str(SERVER)], env=env, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1).close()  # noqa: S310 (loopback)
                return
            except OSError:
                assert time.monotonic() < deadline, "the stand-in did not start"
                time.sleep(0.1)

    engine.folder = tmp_path
    yield engine
    engine(None)


def _canary(folder: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict[str, float]]:
    result = subprocess.run(
        [sys.executable, str(CANARY), str(folder / "canary.json"), *options], capture_output=True, text=True
    )
    text = (folder / "textfile" / "ironserve_canary.prom").read_text()
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if not line.startswith("#")}
    return result, values


def test_golden_answer_recorded_once_then_matched(site):
    site()
    first, values = _canary(site.folder, "--record")
    assert first.returncode == 0, first.stderr
    assert "recorded the golden answer of this deployment" in first.stdout
    assert values["ironserve_canary_answer_matches"] == 1
    # A converge with the golden answer recorded asks the engine nothing (it may be busy, or scaling under load).
    site(None)
    again, _ = _canary(site.folder, "--record")
    assert again.returncode == 0
    assert again.stdout.strip() == "canary: this deployment's golden answer is already recorded"
    site()
    timer, values = _canary(site.folder)
    assert (timer.returncode, timer.stdout, values["ironserve_canary_answer_matches"]) == (0, "", 1)
    assert values["ironserve_canary_success"] == 1
    assert values["ironserve_canary_latency_seconds"] >= 0


def test_a_different_answer_is_drift(site):
    site()
    _canary(site.folder, "--record")
    site("drifted")
    result, values = _canary(site.folder)
    assert result.returncode == 3
    assert "DRIFT" in result.stderr
    assert values["ironserve_canary_answer_matches"] == 0
    site()
    assert _canary(site.folder)[1]["ironserve_canary_answer_matches"] == 1


def test_a_new_deployment_records_a_new_golden_answer(site):
    site()
    _canary(site.folder, "--record")
    site("newmodel")
    (site.folder / "compose.yml").write_text("image: standin@sha256:bbbb\n")
    result, values = _canary(site.folder)
    assert "recorded the golden answer" in result.stdout
    assert values["ironserve_canary_answer_matches"] == 1


def test_no_answer_says_so_without_claiming_drift(site):
    site()
    _canary(site.folder, "--record")
    site(None)
    result, values = _canary(site.folder)
    assert result.returncode == 1
    assert values["ironserve_canary_success"] == 0
    assert "ironserve_canary_answer_matches" not in values
