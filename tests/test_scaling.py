"""Scaling's rules (ironserve.scaling) and its receiver (ironserve.scaler): slots from the GPUs, one step at a time
within them, Alertmanager's webhook read into actions, one action at a time with a cool-down, each logged and
counted. The receiver's server listens on 127.0.0.1 only."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path

import pytest

from ironserve import cli, engines, scaler, scaling

DEPLOY = {"engine": "vllm", "ready_path": "/health", "health_test": ["CMD", "first"]}


@pytest.mark.parametrize(
    ("gpus", "per_engine", "nodes", "limit", "expected"),
    [
        (8, 8, 1, 0, 1),  # the model takes every GPU
        (8, 2, 1, 0, 4),  # four sets of two
        (8, 2, 1, 3, 3),  # capped by inference_replicas_max
        (8, 3, 1, 0, 2),  # whole sets only: never more than the GPUs present
        (8, 8, 2, 0, 1),  # an engine spanning nodes
        (0, 0, 1, 0, 1),  # a CPU engine: one unless told
        (0, 0, 1, 2, 2),
    ],
)
def test_slots_are_whole_sets_of_the_gpus_present(gpus, per_engine, nodes, limit, expected):
    assert scaling.slot_count(gpus, per_engine, nodes, limit) == expected


def test_each_slot_has_its_port_unit_and_own_gpus():
    found = scaling.slots(DEPLOY, "192.0.2.21", 8000, 3, 2)
    assert [s["port"] for s in found] == [8000, 8001, 8002]
    assert [s["unit"] for s in found] == [
        "ironserve-inference.service",
        "ironserve-inference-replica@1.service",
        "ironserve-inference-replica@2.service",
    ]
    assert [s["devices"] for s in found] == [
        ["nvidia.com/gpu=0", "nvidia.com/gpu=1"],
        ["nvidia.com/gpu=2", "nvidia.com/gpu=3"],
        ["nvidia.com/gpu=4", "nvidia.com/gpu=5"],
    ]
    assert found[0]["health_test"] == ["CMD", "first"]  # the deployment's own
    assert found[2]["health_test"] == engines.health_test("vllm", "192.0.2.21", 8002)
    assert found[1]["health"] == "http://192.0.2.21:8001/health"
    assert scaling.slots(DEPLOY, "192.0.2.21", 8000, 1, 8)[0]["devices"] == ["nvidia.com/gpu=all"]


RECORD = {"url": "http://192.0.2.21:8000", "replica_slots": scaling.slots(DEPLOY, "192.0.2.21", 8000, 2, 4)}


def test_serving_follows_the_state_within_the_slots_and_a_record_without_slots_has_one():
    assert [s["slot"] for s in scaling.serving(RECORD, None)] == [0]
    assert [s["slot"] for s in scaling.serving(RECORD, {"replicas": 2})] == [0, 1]
    assert [s["slot"] for s in scaling.serving(RECORD, {"replicas": 5})] == [0, 1]  # re-planned with fewer GPUs
    assert [s["slot"] for s in scaling.serving(RECORD, {"replicas": 0})] == [0]
    old = {"url": "http://192.0.2.21:8000", "health": "http://192.0.2.21:8000/health"}
    assert scaling.serving(old, {"replicas": 3}) == [
        {"slot": 0, "url": old["url"], "health": old["health"], "unit": "ironserve-inference.service"}
    ]


def test_a_step_starts_or_stops_one_engine_within_the_slots_and_counts_every_action():
    out = scaling.step(RECORD, None, "out", now=100.0)
    assert (out["before"], out["after"], out["result"]) == (1, 2, "scaled")
    assert out["start"] == ["ironserve-inference-replica@1.service"]
    assert out["stop"] == []
    assert out["wait_for"] == ["http://192.0.2.21:8001/health"]
    assert out["state"] == {
        "replicas": 2,
        "actions": {"out_scaled": 1},
        "last_action": {"direction": "out", "result": "scaled", "at": 100.0},
    }
    full = scaling.step(RECORD, out["state"], "out")
    assert (full["after"], full["result"], full["start"]) == (2, "at_limit", [])
    assert full["state"]["actions"] == {"out_scaled": 1, "out_at_limit": 1}
    back = scaling.step(RECORD, full["state"], "in")
    assert (back["after"], back["result"], back["stop"], back["start"]) == (
        1,
        "scaled",
        ["ironserve-inference-replica@1.service"],
        [],
    )
    floor = scaling.step(RECORD, back["state"], "in")
    assert (floor["after"], floor["result"], floor["stop"]) == (1, "at_floor", [])
    with pytest.raises(scaling.ScaleError, match="use one of out, in"):
        scaling.step(RECORD, None, "up")


def test_the_textfile_says_engines_slots_and_every_action():
    state = scaling.step(RECORD, None, "out")["state"]
    text = scaling.textfile(RECORD, state)
    assert "ironserve_engine_replicas 2\n" in text
    assert "ironserve_engine_replica_slots 2\n" in text
    assert 'ironserve_scale_actions_total{direction="out",result="scaled"} 1\n' in text
    assert 'ironserve_scale_actions_total{direction="in",result="at_floor"} 0\n' in text
    assert "ironserve_engine_replicas 1\n" in scaling.textfile(RECORD, None)


def _alert(status: str, **labels: str) -> dict:
    return {"status": status, "labels": labels}


def test_the_webhook_gives_the_firing_scale_alerts_once_each():
    payload = {
        "version": "4",
        "alerts": [
            _alert("firing", alertname="EngineScaleOut", scale="out", host="gpu01"),
            _alert("firing", alertname="EngineScaleOut", scale="out", host="gpu01"),  # from the other Prometheus
            _alert("resolved", alertname="EngineScaleIn", scale="in", host="gpu02"),
            _alert("firing", alertname="EngineDown", host="gpu03"),  # not a scale alert
            _alert("firing", alertname="EngineScaleIn", scale="in"),  # no host
            _alert("firing", alertname="EngineScaleIn", scale="in", host="gpu02"),
        ],
    }
    assert scaling.webhook_actions(payload) == [("gpu01", "out"), ("gpu02", "in")]
    with pytest.raises(scaling.ScaleError, match="not an Alertmanager webhook"):
        scaling.webhook_actions({"alerts": "x"})


def _payload(host: str, direction: str) -> dict:
    return {"alerts": [_alert("firing", scale=direction, host=host)]}


def test_the_receiver_runs_one_action_per_host_and_direction_and_skips_within_the_cool_down(tmp_path):
    taken: list[tuple[str, str]] = []
    results = iter(["ok", "failed"])

    def act(host: str, direction: str) -> str:
        taken.append((host, direction))
        return next(results)

    log = tmp_path / "scaler.log"
    receiver = scaler.Scaler(act, cooldown_seconds=3600, log=log)
    assert receiver.receive(_payload("gpu01", "out")) == [("gpu01", "out")]
    assert receiver.receive(_payload("gpu01", "out")) == []  # already pending: Alertmanager repeats
    assert receiver.receive(_payload("gpu02", "out")) == [("gpu02", "out")]
    assert receiver.work_once(0)["result"] == "ok"
    assert receiver.work_once(0)["result"] == "failed"
    receiver.receive(_payload("gpu01", "in"))
    assert receiver.work_once(0)["result"] == "cooling_down"
    assert receiver.work_once(0) is None
    assert taken == [("gpu01", "out"), ("gpu02", "out")]
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["host"], e["direction"], e["result"]) for e in logged] == [
        ("gpu01", "out", "ok"),
        ("gpu02", "out", "failed"),
        ("gpu01", "in", "cooling_down"),
    ]
    metrics = receiver.metrics()
    assert 'ironserve_scaler_actions_total{host="gpu01",direction="out",result="ok"} 1' in metrics
    assert 'ironserve_scaler_actions_total{host="gpu02",direction="out",result="failed"} 1' in metrics
    assert 'ironserve_scaler_actions_total{host="gpu01",direction="in",result="cooling_down"} 1' in metrics
    assert "ironserve_scaler_pending_actions 0" in metrics


def test_an_action_that_raises_is_logged_as_failed_and_the_receiver_goes_on():
    def act(host: str, direction: str) -> str:
        raise RuntimeError("no inventory")

    receiver = scaler.Scaler(act, cooldown_seconds=0)
    receiver.receive(_payload("gpu01", "out"))
    assert receiver.work_once(0)["result"] == "failed: no inventory"
    receiver.receive(_payload("gpu01", "out"))
    assert receiver.work_once(0)["result"].startswith("failed")


def _http(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body, headers or {})
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def test_the_server_takes_webhooks_and_shows_its_metrics():
    receiver = scaler.Scaler(lambda host, direction: "ok", cooldown_seconds=0)
    httpd = scaler.server(receiver, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    try:
        body = json.dumps(_payload("gpu01", "out")).encode()
        status, text = _http(port, "POST", scaler.WEBHOOK_PATH, body)
        assert (status, json.loads(text)) == (200, {"queued": [["gpu01", "out"]]})
        assert _http(port, "POST", scaler.WEBHOOK_PATH, b"{nope")[0] == 400
        assert _http(port, "POST", "/other", body)[0] == 404
        receiver.work_once(0)
        status, text = _http(port, "GET", "/metrics")
        assert status == 200
        assert 'direction="out",result="ok"} 1' in text
    finally:
        httpd.shutdown()
        httpd.server_close()


TOKEN = "t0ken-0123456789abcdef"  # noqa: S105 (a test's)


def test_with_a_token_the_server_refuses_a_webhook_without_it():
    receiver = scaler.Scaler(lambda host, direction: "ok", cooldown_seconds=0, token=TOKEN)
    httpd = scaler.server(receiver, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    body = json.dumps(_payload("gpu01", "out")).encode()
    try:
        assert _http(port, "POST", scaler.WEBHOOK_PATH, body)[0] == 401
        wrong = {"Authorization": "Bearer another-token-0123456789"}
        assert _http(port, "POST", scaler.WEBHOOK_PATH, body, wrong)[0] == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        assert _http(port, "POST", scaler.WEBHOOK_PATH, body, right)[0] == 200
        assert receiver.queued == {("gpu01", "out")}
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_token_file_must_be_private_and_one_token(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    assert scaler.read_token(path) == TOKEN
    path.chmod(0o644)
    with pytest.raises(scaler.TokenError, match="readable by others: chmod 600"):
        scaler.read_token(path)
    path.chmod(0o600)
    path.write_text("short\n")
    with pytest.raises(scaler.TokenError, match="16 or more characters"):
        scaler.read_token(path)
    with pytest.raises(scaler.TokenError, match="No such file"):
        scaler.read_token(tmp_path / "none")


def test_the_scaler_command_refuses_bad_input_before_listening(tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    given = ["--token-file", str(token)]
    assert cli.main(["scaler", "--inventory", str(tmp_path / "none.yml"), *given]) == cli.EXIT_BAD_INPUT
    assert "inventory" in capsys.readouterr().err
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {}\n")
    assert cli.main(["scaler", "--inventory", str(inventory), "--cooldown", "-1", *given]) == cli.EXIT_BAD_INPUT
    assert "--cooldown" in capsys.readouterr().err
    token.chmod(0o644)
    assert cli.main(["scaler", "--inventory", str(inventory), *given]) == cli.EXIT_BAD_INPUT
    assert "chmod 600" in capsys.readouterr().err


def test_the_scale_playbook_exists_where_the_receiver_runs_it():
    assert Path(__file__).resolve().parents[1] / "playbooks" / "scale.yml" == scaler.SCALE_PLAYBOOK
    assert scaler.SCALE_PLAYBOOK.exists()
