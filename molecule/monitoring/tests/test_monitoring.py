"""Monitoring on two serving nodes: every exporter, engine and Prometheus scraped where it listens and nowhere else,
the five dimensions recorded from the stand-in's vLLM metrics, and real faults (an engine stopped, a disk filled, the
master's power cut) reaching both Alertmanagers within two scrape intervals with their runbook, then clearing.

The test reads Prometheus and Alertmanager from a network namespace it makes on the lab's bridge (the segment the
exporters listen on); the faults are made on the machines themselves, and each one's time is read from the machine's
clock (a light machine shares this host's), so the fault-to-alert time counts no SSH round trip."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra
from lab_client import client_namespace, run_python

from ironserve.lab import lab as labs
from ironserve.lab.segment import interface_names

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
NAMES = ["mon-a", "mon-b"]
LAB = f"mol-{os.environ['MOLECULE_SCENARIO_NAME']}"
BRIDGE, _ = interface_names(LAB, NAMES)
HOSTS = {name: testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}") for name in NAMES}
VARS = {name: host.ansible.get_variables() for name, host in HOSTS.items()}
ADDRESS = {name: VARS[name]["monitoring_address"] for name in NAMES}
INTERVAL = float(VARS["mon-a"]["monitoring_scrape_interval_seconds"])
# Two scrape intervals (the bound: a scrape, then an evaluation), plus Prometheus's push to Alertmanager and
# this test's polling.
ALERT_BOUND = 2 * INTERVAL + 2
# A host gone silent costs one more wait: the scrape's timeout (half an interval) before it counts as down, and the
# push's timeout (half an interval) for the Alertmanager that went down with it, which Prometheus waits for.
DEAD_HOST_BOUND = 3 * INTERVAL + 2
# A light machine boots to its services in about a second; then Prometheus replays its write-ahead log and scrapes
# every target within an interval, each target's first scrape no later than one interval after its start.
POWER_ON_BOUND = 60 + 2 * INTERVAL
CLIENT_ADDRESS = "10.96.0.200/24"
FILL_MOUNT = "/srv/monitoring-fault"
MEASURED: dict[str, list[float]] = {}


@pytest.fixture(scope="module")
def client():
    with client_namespace(BRIDGE, CLIENT_ADDRESS) as namespace:
        yield namespace


def _get(client: str, url: str) -> object:
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    return json.loads(run_python(client, script))


def _query(client: str, expr: str, server: str = "mon-a") -> list[dict]:
    from urllib.parse import quote

    answer = _get(client, f"http://{ADDRESS[server]}:9090/api/v1/query?query={quote(expr)}")
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _alerts(client: str, server: str) -> list[dict]:
    return _get(client, f"http://{ADDRESS[server]}:9093/api/v2/alerts?active=true")


def _firing(client: str, name: str, servers: tuple[str, ...] = tuple(NAMES), **labels: str) -> list[dict]:
    """The named alert as the Alertmanagers hold it (they gossip; each gets it from both Prometheus servers)."""
    found = []
    for server in servers:
        found += [alert for alert in _alerts(client, server) if _matches(alert, name, labels)]
    return found


def _until(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.25)
    return value


def _fault(name: str, command: str) -> float:
    """Run the fault on the machine; when it happened, by the machine's clock (the host's)."""
    return float(HOSTS[name].check_output(f"{command} && date +%s.%N"))


# FloatingAddressMoved's window (ironserve/monitoring.py: changes over 10 minutes).
FLOATING_WINDOW_SECONDS = 600


def _quiet(client: str, wanted: list[tuple[str, dict]], servers: tuple[str, ...] = tuple(NAMES)) -> None:
    """Before a fault: none of the alerts it should raise is there yet."""
    for name, labels in wanted:
        assert not _firing(client, name, servers, **labels), f"{name} {labels} was firing before the fault"


def _alerts_after(
    client: str,
    fault_at: float,
    wanted: list[tuple[str, dict]],
    servers: tuple[str, ...] = tuple(NAMES),
    bound: float = ALERT_BOUND,
) -> dict[str, list[dict]]:
    """Wait until every alert of ``wanted`` is in every Alertmanager of ``servers``; record and bound the time from the
    fault to each one's arrival."""
    arrived: dict[str, list[dict]] = {}

    def all_arrived():
        held = {server: _alerts(client, server) for server in servers}
        for name, labels in wanted:
            if name not in arrived and all(any(_matches(a, name, labels) for a in held[s]) for s in servers):
                arrived[name] = [a for a in held[servers[0]] if _matches(a, name, labels)]
                seconds = round(time.time() - fault_at, 2)
                MEASURED.setdefault(name, []).append(seconds)
                where = ", ".join(servers)
                print(f"\n{name} {labels}: in Alertmanager on {where} {seconds} s after the fault (bound {bound} s)")
                assert seconds <= bound, (name, seconds)
        return len(arrived) == len(wanted)

    _until(all_arrived, 4 * bound, f"not all of {wanted} reached {servers}: only {list(arrived)}")
    return arrived


def _matches(alert: dict, name: str, labels: dict) -> bool:
    return alert["labels"]["alertname"] == name and all(alert["labels"].get(k) == v for k, v in labels.items())


def _cleared(client: str, name: str, **labels: str) -> float:
    started = time.time()
    _until(lambda: not _firing(client, name, **labels), 6 * ALERT_BOUND, f"{name} {labels} did not clear")
    return round(time.time() - started, 2)


EVERY_TARGET = {(job, name) for job in ("node", "engine", "prometheus", "alertmanager") for name in NAMES}


def _every_target_up(client: str, server: str) -> dict | None:
    """What the server's Prometheus sees of every target, when it answers and sees each of them up."""
    try:
        targets = _get(client, f"http://{ADDRESS[server]}:9090/api/v1/targets")["data"]["activeTargets"]
    except (AssertionError, json.JSONDecodeError):
        return None  # not answering yet (run_python fails): a machine just powered on
    seen = {(t["labels"]["job"], t["labels"]["host"]): t["health"] for t in targets}
    return seen if set(seen) == EVERY_TARGET and set(seen.values()) == {"up"} else None


def test_every_target_is_scraped_by_both_prometheus_servers(client):
    for server in NAMES:
        _until(
            lambda server=server: _every_target_up(client, server),
            6 * INTERVAL,
            f"{server}'s Prometheus does not see every target up",
        )


def test_exporters_listen_only_on_the_monitoring_address():
    for name, host in HOSTS.items():
        listening = host.check_output("ss -Hltn")
        for port in (9100, 9090, 9093, 9094):
            sockets = [line.split()[3] for line in listening.splitlines() if line.split()[3].endswith(f":{port}")]
            assert sockets == [f"{ADDRESS[name]}:{port}"], (name, port, listening)


def test_the_alertmanagers_form_one_cluster(client):
    for server in NAMES:
        status = _get(client, f"http://{ADDRESS[server]}:9093/api/v2/status")
        assert status["cluster"]["status"] == "ready", status["cluster"]
        assert len(status["cluster"]["peers"]) == 2, status["cluster"]


def _ironserve_status(client: str, *options: str) -> subprocess.CompletedProcess:
    """`ironserve status` as an operator on the monitoring network runs it."""
    argv = [sys.executable, "-m", "ironserve.cli", "status", "--prometheus", f"http://{ADDRESS['mon-a']}:9090"]
    return subprocess.run(["ip", "netns", "exec", client, *argv, *options], capture_output=True, text=True, timeout=60)


def test_ironserve_status_shows_every_host_the_holder_and_no_critical_alert(client):
    shown = _ironserve_status(client)
    print("\n$ ironserve status --prometheus http://" + ADDRESS["mon-a"] + ":9090\n" + shown.stdout + shown.stderr)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    found = json.loads(_ironserve_status(client, "--json").stdout)
    assert set(found["hosts"]) == set(NAMES)
    assert all(row["node"] == "up" and row["engine"] == "up" for row in found["hosts"].values()), found["hosts"]
    assert found["floating_address_holders"] == [_master()]


def test_prometheus_keeps_its_history_within_a_share_of_its_disk():
    for host in HOSTS.values():
        arguments = host.check_output("cat /proc/$(pidof prometheus)/cmdline | tr '\\0' ' '")
        assert "--storage.tsdb.retention.time=30d" in arguments
        assert "--storage.tsdb.retention.size=" in arguments, arguments


def test_the_console_shows_every_host_in_five_dimensions(client):
    """Served by Prometheus itself: a template error would be a 500 or Go's error text in the page."""
    script = (
        "import urllib.request\n"
        f"page = urllib.request.urlopen('http://{ADDRESS['mon-a']}:9090/consoles/ironserve.html', timeout=10)\n"
        "print(page.status); print(page.read().decode())"
    )
    status, page = run_python(client, script).split("\n", 1)
    assert status == "200", page[:500]
    for heading in ("resources", "performance", "business", "quality", "cost"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("<td>mon-a</td>") == 5, page[:2000]
    assert page.count("<td>mon-b</td>") == 5
    assert "error" not in page.lower(), page[:2000]
    # The canary's answer (1: as recorded) is a value, not a dash, for both hosts.
    assert page.count('">1</a></td>') >= 2, page[-3000:]


def _load(client: str, seconds: float, clients: int) -> str:
    """``clients`` threads sending completions through the front door for ``seconds``; prints the count of 200s."""
    key = HOSTS["mon-a"].file("/etc/ironserve/inference/api-key.env").content_string.strip().split("=", 1)[1]
    vip = VARS["mon-a"]["service_frontend_address"].split("/")[0]
    ca = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "artifacts" / "frontend" / "ca.crt"
    return (
        "import http.client, json, ssl, threading, time\n"
        f"context = ssl.create_default_context(cafile={str(ca)!r})\n"
        "ok = []\n"
        "def one():\n"
        f"    deadline = time.monotonic() + {seconds}\n"
        "    while time.monotonic() < deadline:\n"
        f"        c = http.client.HTTPSConnection({vip!r}, 443, context=context, timeout=120)\n"
        "        body = json.dumps({'model': 'deepseek-standin', 'prompt': 'a b c', 'max_tokens': 4})\n"
        f"        c.request('POST', '/v1/completions', body, {{'Authorization': 'Bearer {key}'}})\n"
        "        ok.append(c.getresponse().status == 200)\n"
        "        c.close()\n"
        f"threads = [threading.Thread(target=one) for _ in range({clients})]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print(sum(ok), len(ok))\n"
    )


def test_load_through_the_front_door_shows_in_the_five_dimensions(client):
    """Ten clients on engines that run two requests at a time: a queue on both, tokens flowing, latency recorded."""
    script = _load(client, 30, 10)
    loader = subprocess.Popen(
        ["ip", "netns", "exec", client, sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    try:
        queued = _until(
            lambda: (r := _query(client, "ironserve:engine_requests_waiting > 0")) and len(r) == 2 and r,
            4 * ALERT_BOUND,
            "no queue recorded on both engines",
        )
        print(f"\nqueue while loaded: {[(r['metric']['host'], r['value'][1]) for r in queued]}")
        kv = _query(client, "ironserve:engine_kv_cache_usage_ratio")
        assert {r["metric"]["host"] for r in kv if float(r["value"][1]) > 0} == set(NAMES), kv
    finally:
        out, _ = loader.communicate(timeout=120)
    good, sent = (int(x) for x in out.split())
    assert good == sent > 0, out
    # After the load, its rates and latencies over the window (5 minutes) are there for both hosts.
    for record in (
        "ironserve:engine_generation_tokens:rate5m",
        "ironserve:engine_e2e_latency_seconds:p99_5m",
        "ironserve:engine_time_to_first_token_seconds:p99_5m",
        "ironserve:engine_request_success_ratio:rate5m",
    ):
        found = _until(lambda record=record: len(_query(client, record)) == 2, 4 * ALERT_BOUND, record)
        assert found
    latency = _query(client, "ironserve:engine_e2e_latency_seconds:p99_5m")
    p99 = {r["metric"]["host"]: float(r["value"][1]) for r in latency}
    # Four tokens at 0.5 s each is 2 s at the least; the queue adds to it.
    assert all(value >= 2 for value in p99.values()), p99
    print(f"P99 end-to-end latency under load: {p99}")


def _master() -> str:
    holders = [n for n in NAMES if _vrrp_state(n) == "MASTER"]
    assert len(holders) == 1, holders
    return holders[0]


def test_the_standbys_engine_stopped_fires_engine_down_and_standby_not_ready_then_clears(client):
    """On the standby, so that the address stays where it is (the master's engine stopped would move it)."""
    standby = next(n for n in NAMES if n != _master())
    _quiet(client, [("EngineDown", {"host": standby}), ("StandbyNotReady", {})])
    fault = _fault(standby, "systemctl stop ironserve-inference")
    try:
        alerts = _alerts_after(client, fault, [("EngineDown", {"host": standby})])["EngineDown"]
        assert alerts[0]["annotations"]["summary"] == f"The engine on {standby} does not answer Prometheus"
        assert "systemctl status ironserve-inference" in alerts[0]["annotations"]["runbook"]
        assert alerts[0]["labels"]["severity"] == "critical"
        # A standby without its engine is no standby: held two intervals.
        _until(lambda: _firing(client, "StandbyNotReady"), 4 * ALERT_BOUND, "no StandbyNotReady")
        shown = _ironserve_status(client)
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert f"CRITICAL EngineDown on {standby}" in shown.stdout, shown.stdout
    finally:
        HOSTS[standby].check_output("systemctl start ironserve-inference")
    print(f"EngineDown cleared {_cleared(client, 'EngineDown', host=standby)} s after the engine was started")
    _cleared(client, "StandbyNotReady")


def test_a_filesystem_filled_past_the_threshold_fires_then_clears(client):
    host = HOSTS["mon-a"]
    host.check_output(f"mkdir -p {FILL_MOUNT} && mount -t tmpfs -o size=8m tmpfs {FILL_MOUNT}")
    try:
        wanted = [("DiskNearlyFull", {"host": "mon-a", "mountpoint": FILL_MOUNT})]
        _quiet(client, wanted)
        fault = _fault("mon-a", f"dd if=/dev/zero of={FILL_MOUNT}/fill bs=1M count=8 status=none || true")
        alerts = _alerts_after(client, fault, wanted)["DiskNearlyFull"]
        assert alerts[0]["labels"]["severity"] == "warning"
        assert alerts[0]["annotations"]["summary"].startswith(f"{FILL_MOUNT} on mon-a has 0")
        host.check_output(f"rm {FILL_MOUNT}/fill")
        print(f"DiskNearlyFull cleared {_cleared(client, 'DiskNearlyFull', host='mon-a')} s after the file went")
    finally:
        host.run(f"umount {FILL_MOUNT}")


def test_the_masters_power_cut_fires_failover_and_host_alerts_then_the_host_clears(client):
    master = _master()
    other = next(n for n in NAMES if n != master)
    wanted = [("FloatingAddressMoved", {"host": other}), ("HostExporterDown", {"host": master})]
    # The election at bring-up is a move too (a node that started first held the address until its peer took it):
    # FloatingAddressMoved fires for it for 10 minutes, and a fast run reaches this test inside them. Wait it out.
    started = time.monotonic()
    _until(
        lambda: not _firing(client, "FloatingAddressMoved", host=other),
        FLOATING_WINDOW_SECONDS + 60,
        "FloatingAddressMoved from the bring-up election never cleared",
    )
    print(f"FloatingAddressMoved from the bring-up election quiet after {time.monotonic() - started:.1f} s more")
    _quiet(client, wanted)
    cut = labs.power_off(LAB, master)
    try:
        # The powered-off node's Prometheus and Alertmanager are gone with it: the one left must see and hold both.
        arrived = _alerts_after(client, cut, wanted, (other,), DEAD_HOST_BOUND)
        assert arrived["FloatingAddressMoved"][0]["labels"]["severity"] == "warning"
    finally:
        labs.power_on(LAB, master)
    print(f"HostExporterDown cleared {_cleared(client, 'HostExporterDown', host=master)} s after power on")
    # The host is back when its own Prometheus scrapes every target again: the tests after this one read it.
    back = time.monotonic()
    _until(
        lambda: _every_target_up(client, master),
        POWER_ON_BOUND,
        f"{master}'s Prometheus does not see every target up after power on",
    )
    print(f"{master}'s Prometheus saw every target up {time.monotonic() - back:.1f} s after that")


def _vrrp_state(name: str) -> str:
    text = HOSTS[name].file("/var/lib/prometheus/node-exporter/ironserve_vrrp.prom").content_string
    return next(line.split('state="')[1].split('"')[0] for line in text.splitlines() if line.endswith(" 1"))


DRIFT_DROPIN = "/etc/systemd/system/ironserve-inference.service.d/canary-drift.conf"
# Run the canary until the engine (just restarted) answers: exit 0 same answer, 3 drift, 1 no answer yet.
CANARY_UNTIL = (
    "for try in $(seq 100); do /usr/local/sbin/ironserve-canary /etc/ironserve/monitoring/canary.json >/dev/null "
    "2>&1; rc=$?; [ $rc -ne 1 ] && break; sleep 0.2; done; [ $rc -eq {rc} ]"
)


def test_the_canary_matches_then_a_changed_answer_fires_canary_drift_then_clears(client):
    """The golden answer was recorded at converge; the standby's engine then answers differently (as other weights
    would): its canary's next run reports drift, and CanaryDrift reaches both Alertmanagers."""
    # The master's power cut (the test before) restarted its engine; the canary's timer runs two minutes after boot,
    # and a run the engine did not answer leaves no answer to compare (once the match was missing for this wait's
    # whole bound, right after the power cut). Ask as the timer would, until each engine answers the same.
    for name in NAMES:
        HOSTS[name].check_output(CANARY_UNTIL.format(rc=0))
    _until(
        lambda: len(_query(client, "ironserve:canary_answer_matches == 1")) == 2,
        4 * ALERT_BOUND,
        "the canary's answer is not recorded as matching on both hosts",
    )
    standby = next(n for n in NAMES if n != _master())
    host = HOSTS[standby]
    wanted = [("CanaryDrift", {"host": standby})]
    _quiet(client, wanted)
    host.check_output(
        f"mkdir -p {Path(DRIFT_DROPIN).parent} && printf '[Service]\\nEnvironment=STANDIN_ANSWER_WORD=drifted\\n' "
        f"> {DRIFT_DROPIN} && systemctl daemon-reload && systemctl restart ironserve-inference"
    )
    try:
        fault = _fault(standby, CANARY_UNTIL.format(rc=3))
        alerts = _alerts_after(client, fault, wanted)["CanaryDrift"]
        assert alerts[0]["labels"]["severity"] == "critical"
    finally:
        host.check_output(f"rm -f {DRIFT_DROPIN} && systemctl daemon-reload && systemctl restart ironserve-inference")
    host.check_output(CANARY_UNTIL.format(rc=0))
    print(f"CanaryDrift cleared {_cleared(client, 'CanaryDrift', host=standby)} s after the answer was the same again")


SCALER_ADDRESS = CLIENT_ADDRESS.split("/")[0]
SCALER_PORT = 9096
# The receiver's cool-down, short for the bench: an Alertmanager repeat arriving while Prometheus has not yet seen the
# new engine is skipped, not a second action.
SCALER_COOLDOWN = 30
ACTION_BOUND = 420  # the hold (10 s or 20 s), a scrape, the webhook, and a scale playbook run or two (one at a time)


def _serve_in_namespace(namespace: str, receiver) -> object:
    """The scaler's webhook server on the test's address on the lab bridge (where Alertmanager posts): its thread
    enters the namespace; the action worker, started from this thread, runs the playbook from this machine."""
    import threading

    from ironserve import scaler
    from ironserve.lab.netns_forward import enter_netns

    made: dict[str, object] = {}
    ready = threading.Event()

    def run() -> None:
        enter_netns(path=f"/run/netns/{namespace}")
        made["server"] = scaler.server(receiver, SCALER_ADDRESS, SCALER_PORT)
        ready.set()
        made["server"].serve_forever()

    threading.Thread(target=run, daemon=True, name="scaler-webhook").start()
    assert ready.wait(10), "the scaler's server did not start"
    return made["server"]


def _serving(client: str) -> dict[str, int]:
    """Engines serving per host, as Prometheus reads each host's textfile."""
    return {r["metric"]["host"]: int(float(r["value"][1])) for r in _query(client, "ironserve_engine_replicas")}


def test_load_scales_a_host_out_through_alertmanager_and_the_scaler_then_in_when_it_falls(client):
    """Thirty clients on engines that run two requests at a time: EngineScaleOut reaches the scaler (ironserve
    scaler's receiver, in this process), which runs playbooks/scale.yml: the host's second engine starts, the front
    door sends it requests and Prometheus scrapes it. The load stops: after the cool-down EngineScaleIn takes it away
    again. Every action is in the scaler's log and counted on the host."""
    import threading

    from ironserve import scaler

    log = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "scaler.log"
    log.unlink(missing_ok=True)
    token = VARS["mon-a"]["monitoring_scaler_token"]
    receiver = scaler.Scaler(scaler.playbook_action(Path(INVENTORY)), SCALER_COOLDOWN, log, token=token)
    threading.Thread(target=receiver.work_forever, daemon=True, name="scale-actions").start()
    server = _serve_in_namespace(client, receiver)
    assert set(_serving(client).values()) == {1}, _serving(client)
    loader = subprocess.Popen(
        ["ip", "netns", "exec", client, sys.executable, "-c", _load(client, 600, 30)],
        stdout=subprocess.PIPE,
        text=True,
    )
    started = time.time()
    try:
        scaled = _until(
            lambda: [host for host, count in _serving(client).items() if count == 2],
            ACTION_BOUND,
            f"no host scaled out (the scaler's log: {log})",
        )
        out_seconds = round(time.time() - started, 1)
        host = scaled[0]
        print(f"\nload to a second engine serving on {host}: {out_seconds} s")
        # The new engine serves through the front door and is scraped: its own token counter grows.
        second = f'vllm:generation_tokens_total{{host="{host}",instance=~".*:8001"}}'
        _until(lambda: (r := _query(client, second)) and float(r[0]["value"][1]) > 0, ACTION_BOUND, second)
        haproxy = HOSTS[host].file("/etc/haproxy/haproxy.cfg").content_string
        assert f"server {host}-engine1 " in haproxy, haproxy
    finally:
        loader.kill()
        loader.communicate(timeout=30)
    stopped = time.time()
    try:
        _until(
            lambda: set(_serving(client).values()) == {1} and not receiver.queued,
            2 * ACTION_BOUND,
            f"not scaled in (the scaler's log: {log})",
        )
    finally:
        server.shutdown()
    in_seconds = round(time.time() - stopped, 1)
    print(f"load stopped to one engine per host again: {in_seconds} s")
    assert not HOSTS[host].service("ironserve-inference-replica@1").is_running
    assert f"{host}-engine1" not in HOSTS[host].file("/etc/haproxy/haproxy.cfg").content_string
    actions = [json.loads(line) for line in log.read_text().splitlines()]
    shown = "; ".join(f"{a['host']} {a['direction']} {a['result']} {a['seconds']} s" for a in actions)
    print(f"the scaler's actions: {shown}")
    done = {(a["host"], a["direction"]) for a in actions if a["result"] == "ok"}
    assert {(host, "out"), (host, "in")} <= done, actions
    assert not [a for a in actions if a["result"].startswith("failed")], actions
    counted = _query(client, f'ironserve_scale_actions_total{{host="{host}",result="scaled"}}')
    assert {r["metric"]["direction"]: float(r["value"][1]) for r in counted} == {"out": 1.0, "in": 1.0}, counted
    metrics = receiver.metrics()
    # An Alertmanager repeat that came in before Prometheus saw the new engine ran after the cool-down: "ok" too.
    assert f'ironserve_scaler_actions_total{{host="{host}",direction="out",result="ok"}} ' in metrics, metrics
    MEASURED_SCALING.update({"scale out": out_seconds, "scale in": in_seconds})


MEASURED_SCALING: dict[str, float] = {}


def test_summary_of_fault_to_alert_times():
    assert MEASURED, "no fault was measured"
    every = [seconds for times in MEASURED.values() for seconds in times]
    print(
        f"\nfault to alert in Alertmanager (scrape and evaluation every {INTERVAL:g} s; bound {ALERT_BOUND} s, "
        f"{DEAD_HOST_BOUND} s where a host went silent): "
        + "; ".join(f"{name} {times}" for name, times in MEASURED.items())
        + f"; median {statistics.median(every)} s, max {max(every)} s"
    )
    if MEASURED_SCALING:
        print("scaling (from the load's start or stop to the engines serving): " + str(MEASURED_SCALING))
