"""The bench's stand-in engine across two nodes, on loopback addresses: it must form its group as SGLang's ranks do
(rank 0 serves nothing until every rank joined from its declared address) and fail where a real group fails (a rank
of another group refused, a rank that leaves ends the group), or the inference scenario's two-node checks could pass
on a wrong rank or address."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from debian_tools import tool
from loopback import free_port

from ironserve import engines

SERVER = Path(__file__).parent / "fixtures" / "standin-engine" / "server.py"
KEY = "is-0123456789abcdefghijklmnopqrstuvwxyz"
RANK_0, RANK_1 = "127.0.0.1", "127.0.0.2"


@pytest.fixture
def group(tmp_path):
    """Start ranks of a two-node stand-in, with the environment the inference role renders for each."""
    (tmp_path / "config.json").write_text("{}")
    port, rendezvous = free_port(), free_port()
    addresses = {"node-0": f"{RANK_0}/8", "node-1": f"{RANK_1}/8"}
    started: list[subprocess.Popen] = []

    def start(host: str, **overrides: str) -> subprocess.Popen:
        place = engines.placement(["node-0", "node-1"], host, 2, addresses)
        env = {
            "MODEL_DIR": str(tmp_path),
            "IRONSERVE_API_KEY": KEY,
            "IRONSERVE_HOST": place.address,
            "IRONSERVE_PORT": str(port),
            **engines.custom_environment(place, rendezvous),
            **overrides,
        }
        process = subprocess.Popen(
            [sys.executable, str(SERVER)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        started.append(process)
        return process

    start.port = port
    yield start
    for process in started:
        process.kill()
        process.wait()


def _status(address: str, port: int, path: str, method: str = "GET") -> int | None:
    body = json.dumps({"model": "standin", "prompt": "ping", "max_tokens": 1}).encode() if method == "POST" else None
    request = urllib.request.Request(f"http://{address}:{port}{path}", data=body, method=method)
    request.add_header("Authorization", f"Bearer {KEY}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (http on loopback)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _until(condition, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def test_rank_0_serves_only_once_rank_1_joined_and_rank_1_serves_health_only(group):
    group("node-0")
    time.sleep(1)
    assert _status(RANK_0, group.port, "/health") is None  # not listening: the group has not formed
    group("node-1")
    assert _until(lambda: _status(RANK_0, group.port, "/v1/completions", "POST")) == 200
    assert _until(lambda: _status(RANK_1, group.port, "/health")) == 200
    assert _status(RANK_1, group.port, "/v1/completions", "POST") == 404


def test_a_rank_that_leaves_ends_the_group(group):
    head = group("node-0")
    member = group("node-1")
    _until(lambda: _status(RANK_0, group.port, "/health"))
    member.kill()
    assert head.wait(timeout=10) == 1
    assert "rank 1 left the group" in head.stdout.read()


def test_a_rank_of_another_shape_is_refused_and_rank_0_keeps_waiting(group):
    head = group("node-0")
    stranger = group("node-1", IRONSERVE_NNODES="3")
    assert stranger.wait(timeout=10) == 1
    assert "3 nodes announced, this group has 2" in stranger.stdout.read()
    assert head.poll() is None
    assert _status(RANK_0, group.port, "/health") is None


def test_rank_0_given_a_rendezvous_address_not_its_own_does_not_start(group):
    head = group("node-0", IRONSERVE_DIST_INIT_ADDR="192.0.2.1:29500")
    assert head.wait(timeout=10) != 0
    assert "rank 0 cannot listen on the rendezvous address 192.0.2.1:29500" in head.stdout.read()


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{RANK_0}:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}


def test_one_node_queues_beyond_its_batch_and_counts_as_vllm_does(tmp_path):
    """The monitoring scenario's queue and latency alerts read these: vLLM 0.11.0's names, a real queue."""
    (tmp_path / "config.json").write_text("{}")
    port = free_port()
    label = 'model_name="standin",engine="0"'
    process = subprocess.Popen(
        [sys.executable, str(SERVER)],
        env={
            "MODEL_DIR": str(tmp_path),
            "IRONSERVE_API_KEY": KEY,
            "IRONSERVE_HOST": RANK_0,
            "IRONSERVE_PORT": str(port),
            "SERVED_MODEL_NAME": "standin",
            "STANDIN_MAX_RUNNING": "1",
            "STANDIN_SECONDS_PER_TOKEN": "0.3",
        },
    )
    try:
        _until(lambda: _status(RANK_0, port, "/health") == 200)
        posts = [threading.Thread(target=_status, args=(RANK_0, port, "/v1/completions", "POST")) for _ in range(3)]
        for post in posts:
            post.start()

        def queued() -> dict | None:
            now = _metrics(port)
            return now if now[f"vllm:num_requests_waiting{{{label}}}"] == 2 else None

        busy = _until(queued)
        assert busy[f"vllm:num_requests_running{{{label}}}"] == 1
        for post in posts:
            post.join()
        done = _metrics(port)
        assert done[f"vllm:num_requests_waiting{{{label}}}"] == 0
        assert done[f'vllm:request_success_total{{{label},finished_reason="length"}}'] == 3
        assert done[f"vllm:generation_tokens_total{{{label}}}"] == 3
        assert done[f"vllm:e2e_request_latency_seconds_count{{{label}}}"] == 3
        # The last one waited for the two before it: over 0.5 s, its first token included.
        assert done[f'vllm:time_to_first_token_seconds_bucket{{{label},le="0.5"}}'] <= 2
        with urllib.request.urlopen(f"http://{RANK_0}:{port}/metrics", timeout=2) as response:
            checked = subprocess.run(
                [str(tool("promtool", "promtool")), "check", "metrics"], input=response.read(), capture_output=True
            )
        # It parses; what promtool's lint still says, vLLM's own names draw too (colons are its namespace).
        complaints = (checked.stdout + checked.stderr).decode().splitlines()
        assert complaints, "promtool check metrics said nothing"
        assert all(line.endswith("metric names should not contain ':'") for line in complaints), complaints
    finally:
        process.kill()
        process.wait()
