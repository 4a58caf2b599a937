"""`ironserve status` against a Prometheus stand-in on loopback that answers the HTTP API as Prometheus 2.53 does:
the table, the JSON, the holder of the floating address, the alerts, and the exit codes."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse

import pytest

from ironserve import cli, status

SERIES = {
    'up{job="node"}': [({"host": "gpu01", "job": "node"}, 1), ({"host": "gpu02", "job": "node"}, 1)],
    'up{job="engine"}': [({"host": "gpu01", "job": "engine"}, 1), ({"host": "gpu02", "job": "engine"}, 0)],
    "ironserve_vrrp_state == 1": [({"host": "gpu01", "state": "MASTER"}, 1), ({"host": "gpu02", "state": "FAULT"}, 1)],
    "ironserve:engine_requests_waiting": [({"host": "gpu01"}, 3)],
    "ironserve:engine_kv_cache_usage_ratio": [({"host": "gpu01"}, 0.5)],
    "ironserve:engine_e2e_latency_seconds:p99_5m": [({"host": "gpu01"}, 9.88), ({"host": "gpu02"}, "NaN")],
}


def _answer(path: str, query: dict, alerts: list) -> dict:
    if path == "/api/v1/alerts":
        return {"status": "success", "data": {"alerts": alerts}}
    if path == "/api/v1/query":
        found = SERIES.get(query["query"][0], [])
        result = [{"metric": labels, "value": [1796566861.0, str(value)]} for labels, value in found]
        return {"status": "success", "data": {"resultType": "vector", "result": result}}
    return {"status": "error", "error": f"no {path}"}


@pytest.fixture
def prometheus():
    alerts: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            body = json.dumps(_answer(url.path, urllib.parse.parse_qs(url.query), alerts)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.alerts = alerts
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()


ENGINE_DOWN = {
    "labels": {"alertname": "EngineDown", "severity": "critical", "host": "gpu02"},
    "annotations": {"summary": "The engine on gpu02 does not answer Prometheus"},
    "state": "firing",
    "activeAt": "2026-12-06T14:00:00Z",
}


def test_the_table_shows_every_host_the_holder_and_no_alert(prometheus, capsys):
    assert cli.main(["status", "--prometheus", prometheus.url]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["host", "node", "engine", "vrrp", "running"]
    gpu01 = lines[1].split()
    assert gpu01[:4] == ["gpu01", "up", "up", "MASTER"]
    assert "50%" in gpu01
    assert "9.88s" in gpu01
    assert lines[2].split()[:4] == ["gpu02", "up", "DOWN", "FAULT"]
    assert "floating address held by: gpu01" in out
    assert "alerts firing: none" in out


def test_a_critical_alert_is_listed_and_exits_1(prometheus, capsys):
    prometheus.alerts.append(ENGINE_DOWN)
    prometheus.alerts.append({**ENGINE_DOWN, "state": "pending", "labels": {"alertname": "Other"}})
    assert cli.main(["status", "--prometheus", prometheus.url]) == 1
    out = capsys.readouterr().out
    assert "alerts firing (1):" in out
    assert "CRITICAL EngineDown on gpu02: The engine on gpu02 does not answer Prometheus" in out


def test_json_for_pipelines(prometheus, capsys):
    prometheus.alerts.append(ENGINE_DOWN)
    assert cli.main(["status", "--prometheus", prometheus.url, "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert found["floating_address_holders"] == ["gpu01"]
    # No request in the window: the quantile is NaN, shown as nothing (null), never as an invalid JSON NaN.
    assert found["hosts"]["gpu02"] == {"node": "up", "engine": "DOWN", "vrrp": "FAULT", "p99": None}
    assert found["alerts"][0]["alert"] == "EngineDown"
    assert found["critical"] is True


def test_prometheus_not_answering_is_an_environment_failure(capsys):
    assert cli.main(["status", "--prometheus", "http://127.0.0.1:1", "--json"]) == 3
    assert "cannot read http://127.0.0.1:1/api/v1/query" in json.loads(capsys.readouterr().out)["error"]


def test_the_inventory_names_the_first_monitoring_server():
    inventory = {
        "_meta": {"hostvars": {"gpu01": {"mgmt_network_address": "192.0.2.11/24"}, "gpu02": {}}},
        "all": {"children": ["ungrouped", "inference_servers"]},
        "inference_servers": {"children": ["inference_primary", "inference_standby"]},
        "inference_primary": {"hosts": ["gpu01"]},
        "inference_standby": {"hosts": ["gpu02"]},
    }
    assert status.prometheus_from_inventory(inventory) == "http://192.0.2.11:9090"
    inventory["monitoring_servers"] = {"hosts": ["gpu02"]}
    inventory["_meta"]["hostvars"]["gpu02"] = {"monitoring_address": "{{ something }}"}
    with pytest.raises(status.StatusError, match="gpu02 no literal monitoring_address"):
        status.prometheus_from_inventory(inventory)


def test_status_finds_prometheus_through_the_inventory(prometheus, tmp_path, capsys):
    port = prometheus.url.rsplit(":", 1)[1]
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    monitoring_servers:\n      hosts:\n        mon01:\n"
        f"          monitoring_address: 127.0.0.1\n          monitoring_prometheus_port: {port}\n"
    )
    assert cli.main(["status", "--inventory", str(tmp_path / "hosts.yml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prometheus"] == prometheus.url
