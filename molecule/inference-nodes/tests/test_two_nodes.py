"""One engine over two nodes: infer-b (rank 1) joined infer-a's (rank 0) rendezvous over the data segment at the
address the role rendered from the inventory, only rank 0 serves the API, and a node that hangs takes the group out
of service and is named by the readiness check, until it comes back."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import testinfra
from lab_ansible import ansible_playbook

from ironserve.network import data_address

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
PLAYBOOK = SCENARIO.parent.parent / "playbooks/inference.yml"
PROJECT = "/etc/ironserve/inference"
READY = "/usr/local/sbin/ironserve-inference-ready"
RANK_0, RANK_1 = (
    testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}") for name in ("infer-a", "infer-b")
)
# Each host's data-plane address as the role renders it from the inventory (the same rule, ironserve.network).
DATA = {host.backend.host: data_address(host.ansible.get_variables()).split("/")[0] for host in (RANK_0, RANK_1)}
RENDEZVOUS = f"{DATA['infer-a']}:20000"


def _engine(host) -> dict:
    name = host.check_output(f"docker compose -f {PROJECT}/compose.yml ps -q engine")
    return json.loads(host.check_output(f"docker inspect {name}"))[0]


def _environment(host) -> dict[str, str]:
    return dict(item.split("=", 1) for item in _engine(host)["Config"]["Env"])


def _until(condition, seconds: int, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(3)


def _status(host, method: str, path: str) -> int:
    """The HTTP status a request from the host itself to its own service address gets."""
    script = (
        "import urllib.request, urllib.error\n"
        f"request = urllib.request.Request('http://10.0.2.15:8000{path}', method='{method}', "
        f"data=b'{{}}' if '{method}' == 'POST' else None)\n"
        "try:\n    print(urllib.request.urlopen(request, timeout=20).status)\n"
        "except urllib.error.HTTPError as error:\n    print(error.code)\n"
    )
    return int(host.check_output(f"python3 -c {shlex.quote(script)}"))


def test_each_node_runs_with_its_rank_and_rank_0s_rendezvous_from_the_inventory():
    for rank, host, name in ((0, RANK_0, "infer-a"), (1, RANK_1, "infer-b")):
        environment = _environment(host)
        assert environment["IRONSERVE_NNODES"] == "2"
        assert environment["IRONSERVE_NODE_RANK"] == str(rank)
        assert environment["IRONSERVE_DIST_INIT_ADDR"] == RENDEZVOUS
        assert environment["IRONSERVE_NODE_ADDRESS"] == DATA[name]
        ready = json.loads(host.file(f"{PROJECT}/ready.json").content_string)
        assert (ready["rank"], ready["serves_api"], ready["head"]) == (rank, rank == 0, "infer-a")


def test_rank_1_joined_rank_0_over_the_data_segment():
    # The kernel's view on both ends: one connection from rank 1's data address to rank 0's rendezvous port.
    joined = RANK_1.check_output("ss -Htn state established '( dport = :20000 )'").split()
    assert RENDEZVOUS in joined, joined
    assert any(word.startswith(f"{DATA['infer-b']}:") for word in joined), joined
    accepted = RANK_0.check_output("ss -Htn state established '( sport = :20000 )'").split()
    assert RENDEZVOUS in accepted, accepted
    assert any(word.startswith(f"{DATA['infer-b']}:") for word in accepted), accepted


def test_only_rank_0_serves_the_api_and_both_are_ready():
    assert _status(RANK_1, "GET", "/health") == 200
    assert _status(RANK_1, "POST", "/v1/completions") == 404
    assert _status(RANK_0, "POST", "/v1/completions") == 401  # the API, asking for its key
    assert RANK_0.run(READY).rc == 0
    member = RANK_1.run(READY)
    assert member.rc == 0, member.stdout
    assert "infer-b is rank 1 of 2 in the engine led by infer-a" in member.stdout


def test_a_hung_node_takes_the_engine_out_of_service_and_the_stage_names_it():
    pid = _engine(RANK_1)["State"]["Pid"]
    RANK_1.check_output(f"kill -STOP {pid}")
    try:
        # Rank 0 hears nothing from rank 1 and leaves the group (as NCCL's watchdog ends a real engine).
        _until(lambda: RANK_0.run(READY).rc != 0, 90, "rank 0 kept serving without rank 1")
        result = ansible_playbook(INVENTORY, PLAYBOOK, {"inference_ready_timeout_seconds": 20})
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-3000:]
        assert "not ready: infer-b (rank 1 of 2) has not joined the engine led by infer-a" in output, output[-3000:]
    finally:
        RANK_1.check_output(f"kill -CONT {pid}")
    _until(lambda: RANK_0.run(READY).rc == 0, 240, "the group did not form again after rank 1 came back")
    assert RANK_1.run(READY).rc == 0
