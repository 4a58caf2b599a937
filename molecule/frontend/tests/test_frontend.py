"""The front door on two nodes: TLS on the floating address with the site CA, the API key passed through and required,
one node holding the address, an engine killed without a failed request, the master node's power cut again and
again (the time to the first answer from the other node, measured), the standby rebooted, VRRP blocked between
the two (the split brain reported), each plane's refusals from the client, and no secret in any log or process list.

The client is a network namespace this test makes on the lab's bridge (the service segment): this machine has no
address there and routes nothing into it."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra
from lab_ansible import ansible_playbook
from lab_client import client_namespace, connect, nic, run_python

from ironserve.lab import lab as labs
from ironserve.lab.segment import interface_names

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
CA = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "artifacts" / "frontend" / "ca.crt"
LOOP = Path(__file__).with_name("client_loop.py")
NAMES = ["front-a", "front-b"]
LAB = f"mol-{os.environ['MOLECULE_SCENARIO_NAME']}"
BRIDGE, _ = interface_names(LAB, NAMES)
HOSTS = {name: testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}") for name in NAMES}
VIP = HOSTS["front-a"].ansible.get_variables()["service_frontend_address"].split("/")[0]
CLIENT_ADDRESS = "10.97.0.200/24"
TRIALS = 10
PLAYBOOK = SCENARIO.parent.parent / "playbooks/frontend.yml"
SENDER = SCENARIO.parent.parent / "tests/vrrp_sender.py"


@pytest.fixture(scope="module")
def client():
    """A namespace on the service segment with one address in its subnet; removed at the end."""
    with client_namespace(BRIDGE, CLIENT_ADDRESS) as namespace:
        yield namespace


def _api_key() -> str:
    line = HOSTS["front-a"].file("/etc/ironserve/inference/api-key.env").content_string.strip()
    return line.split("=", 1)[1]


def _start_loop(namespace: str, seconds: float, key: str | None = None) -> subprocess.Popen:
    argv = ["ip", "netns", "exec", namespace, sys.executable, str(LOOP), VIP, "443", str(CA), str(seconds)]
    environment = {**os.environ, "IRONSERVE_API_KEY": _api_key() if key is None else key}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def _results(loop: subprocess.Popen) -> list[dict]:
    out, err = loop.communicate(timeout=600)
    assert loop.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _holders() -> list[str]:
    return [name for name, host in HOSTS.items() if f" {VIP}/" in host.check_output("ip -4 -o addr show")]


def _vrrp_state(name: str) -> str:
    text = HOSTS[name].file("/var/lib/prometheus/node-exporter/ironserve_vrrp.prom").content_string
    return next(line.split('state="')[1].split('"')[0] for line in text.splitlines() if line.endswith(" 1"))


def _until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def _keepalived_journal() -> str:
    return "\n".join(
        f"--- {name}\n" + host.run("journalctl -u keepalived -n 30 --no-pager -o short-monotonic").stdout
        for name, host in HOSTS.items()
    )


def test_one_node_alone_holds_the_floating_address():
    # Which one depends on which keepalived started first (nopreempt: the first master keeps it); the priorities that
    # favour the primary group when both start together are unit-tested (tests/test_frontend.py).
    # The converge returns once keepalived is started; its tracked checks need two passes (rise 2) before a node may
    # take the address, so the election is given time to settle. Seen in CI with the CPUs saturated by TCG machines
    # beside this scenario: no holder when the first check ran right after the idempotence pass.
    started = time.monotonic()
    deadline = started + 60
    while len(holders := _holders()) != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(holders) == 1, f"holders after {time.monotonic() - started:.0f} s: {holders}\n{_keepalived_journal()}"
    print(f"\none holder, {holders[0]}, {time.monotonic() - started:.1f} s after the first look")
    other = next(name for name in NAMES if name not in holders)
    assert (_vrrp_state(holders[0]), _vrrp_state(other)) == ("MASTER", "BACKUP")


def test_both_nodes_present_the_same_certificate_and_serve_with_the_same_key():
    digests = {
        name: host.check_output(
            "sha256sum /etc/ironserve/frontend/server.pem /etc/ironserve/inference/api-key.env | cut -d' ' -f1"
        )
        for name, host in HOSTS.items()
    }
    assert digests["front-a"] == digests["front-b"]
    for host in HOSTS.values():
        assert host.file("/etc/ironserve/frontend/server.pem").mode == 0o600


def test_a_completion_over_tls_verified_against_the_site_ca(client):
    results = _results(_start_loop(client, 1.0))
    assert results, "the client sent nothing"
    assert {r["result"] for r in results} == {"200"}, results
    subject = run_python(
        client,
        "import socket, ssl\n"
        f"context = ssl.create_default_context(cafile={str(CA)!r})\n"
        f"raw = socket.create_connection(({VIP!r}, 443), timeout=5)\n"
        f"with context.wrap_socket(raw, server_hostname={VIP!r}) as tls:\n"
        "    print(tls.getpeercert()['subjectAltName'])",
    )
    assert f"('IP Address', '{VIP}')" in subject


def test_without_the_key_with_a_wrong_key_and_over_plain_http_refused(client):
    assert {r["result"] for r in _results(_start_loop(client, 0.5, key=""))} == {"401"}
    assert {r["result"] for r in _results(_start_loop(client, 0.5, key="is-wrong"))} == {"401"}
    plain = run_python(
        client,
        "import http.client\n"
        "for port in (443, 80):\n"
        f"    c = http.client.HTTPConnection({VIP!r}, port, timeout=5)\n"
        "    try:\n"
        "        c.request('GET', '/v1/models'); print(port, c.getresponse().status)\n"
        "    except (OSError, http.client.HTTPException) as exc:\n"
        "        print(port, type(exc).__name__)",
    )
    assert "200" not in plain, plain
    assert "401" not in plain, plain


def test_the_masters_engine_killed_fails_no_request(client):
    master = _holders()[0]
    loop = _start_loop(client, 12.0)
    time.sleep(2)
    HOSTS[master].check_output("systemctl kill --signal=KILL ironserve-inference.service")
    results = _results(loop)
    failed = [r for r in results if r["result"] != "200"]
    print(
        f"\nengine on {master} (holding the address) killed with SIGKILL: {len(results)} requests, {len(failed)} failed"
    )
    assert not failed, failed
    _until(lambda: HOSTS[master].service("ironserve-inference").is_running, 30, "the engine did not come back")
    assert _holders() == [master]  # the engine's death does not move the address: the front door still serves


def _trial(client: str) -> dict:
    """Cut the power of the node that holds the address, measure until the first answer, and power it on again."""
    master = _holders()
    assert len(master) == 1, master
    other = next(name for name in NAMES if name != master[0])
    assert (_vrrp_state(master[0]), _vrrp_state(other)) == ("MASTER", "BACKUP")
    loop = _start_loop(client, 12.0)
    time.sleep(2)
    try:
        cut = labs.power_off(LAB, master[0])
        results = _results(loop)
    finally:
        labs.power_on(LAB, master[0])
    # The kill takes a few milliseconds to reach every process: a request in them may still be answered by the dying
    # node (seen). The answer that counts is the first one after the first failure (or the first at all, if the cut
    # went unnoticed).
    after = [r for r in results if r["ended"] >= cut]
    first_failure = next((i for i, r in enumerate(after) if r["result"] != "200"), 0)
    first_ok = next((r for r in after[first_failure:] if r["result"] == "200" and r["started"] >= cut), None)
    assert first_ok is not None, f"no answer within 10 s of cutting {master[0]}'s power: {after[-3:]}"
    # The node comes back as BACKUP and the address stays where it went (nopreempt).
    _until(lambda: _vrrp_state(master[0]) == "BACKUP", 60, f"{master[0]} did not come back as BACKUP")
    assert _holders() == [other]
    print(
        f"\n  {master[0]} cut: "
        + "; ".join(f"{r['started'] - cut:+.2f}..{r['ended'] - cut:+.2f} {r['result'][:40]}" for r in after[:6])
    )
    return {
        "from": master[0],
        "to": other,
        "seconds": round(first_ok["ended"] - cut, 2),
        "failed": sum(1 for r in after if r["result"] != "200" and r["started"] < first_ok["started"]),
    }


def test_the_masters_power_cut_hands_the_address_over_and_it_stays_when_back(client):
    trials = []
    for _ in range(TRIALS):
        trials.append(_trial(client))
        _until(_both_engines_up, 30, "the front door did not see both engines up again")
    times = [t["seconds"] for t in trials]
    print(
        f"\nfailover, {TRIALS} trials (the master's power cut: its processes killed, its NICs gone): time to the first "
        f"answer from the other node min {min(times)} / median {statistics.median(times)} / max {max(times)} s; "
        f"failed requests per trial {[t['failed'] for t in trials]}; "
        f"{[(t['from'], t['to'], t['seconds']) for t in trials]}"
    )
    assert statistics.median(times) <= 5, trials
    assert max(times) <= 15, trials  # the design's promise


def _both_engines_up() -> bool:
    """The master's HAProxy marks both engines UP (its stats socket, as keepalived's check reads it)."""
    master = _holders()
    if len(master) != 1:
        return False
    stats = (
        HOSTS[master[0]]
        .run(
            "python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
            "s.sendall(b'show stat\\n'); print(s.makefile().read())\""
        )
        .stdout
    )
    rows = [line.split(",") for line in stats.splitlines() if line.startswith("engines,") and "BACKEND" not in line]
    return len(rows) == 2 and all(row[17] == "UP" for row in rows)


def test_the_standby_rebooted_brings_its_whole_front_door_back_and_no_request_fails(client):
    master = _holders()
    assert len(master) == 1, master
    standby = next(name for name in NAMES if name != master[0])
    loop = _start_loop(client, 25.0)
    time.sleep(2)
    labs.power_off(LAB, standby, orderly=True)
    booted = labs.power_on(LAB, standby)
    results = _results(loop)
    failed = [r for r in results if r["result"] != "200"]
    print(f"\nstandby {standby} rebooted (up again in {booted:.1f} s): {len(results)} requests, {len(failed)} failed")
    assert not failed, failed
    host = HOSTS[standby]
    _until(lambda: _vrrp_state(standby) == "BACKUP", 60, f"{standby} did not come back as BACKUP")
    for unit in ("haproxy", "keepalived", "ironserve-split-brain", "ironserve-inference"):
        assert host.service(unit).is_running, unit
        assert host.service(unit).is_enabled, unit
    assert "table inet ironserve_frontend" in host.check_output("nft list tables")
    assert _holders() == master
    _until(_both_engines_up, 30, "the master's front door did not see the standby's engine up again")


def _nft_block_vrrp(name: str, block: bool) -> None:
    # A table of the test's own (the front door's table is left as it is): VRRP dropped before it arrives.
    if block:
        HOSTS[name].check_output(
            "nft -f - <<'EOF'\ntable inet ironserve_test_block {\n chain input {\n"
            "  type filter hook input priority -10; policy accept;\n  ip protocol vrrp drop\n }\n}\nEOF"
        )
    else:
        HOSTS[name].run("nft delete table inet ironserve_test_block")


def _split_brain_metric(name: str) -> int:
    text = HOSTS[name].file("/var/lib/prometheus/node-exporter/ironserve_split_brain.prom").content_string
    return int(next(line for line in text.splitlines() if line.startswith("ironserve_vrrp_split_brain{")).split()[-1])


def test_vrrp_blocked_both_claim_the_address_and_the_split_brain_is_reported():
    assert all(_split_brain_metric(name) == 0 for name in NAMES)
    since = HOSTS["front-a"].check_output("date '+%Y-%m-%d %H:%M:%S'")
    for name in NAMES:
        _nft_block_vrrp(name, True)
    try:
        _until(lambda: len(_holders()) == 2, 20, "blocking VRRP did not make both nodes claim the address")
        _until(lambda: all(_split_brain_metric(name) == 1 for name in NAMES), 20, "the split brain was not reported")
        for name in NAMES:
            journal = HOSTS[name].check_output(
                f"journalctl -t ironserve-vrrp --since '{since}' -p crit --no-pager -o cat"
            )
            assert f"split brain: {VIP} is held by this node and also answered for by" in journal, (name, journal)
    finally:
        for name in NAMES:
            _nft_block_vrrp(name, False)
    _until(lambda: len(_holders()) == 1, 20, "VRRP back: still not one holder")
    _until(lambda: all(_split_brain_metric(name) == 0 for name in NAMES), 20, "the split brain report did not clear")
    for name in NAMES:
        journal = HOSTS[name].check_output(f"journalctl -t ironserve-vrrp --since '{since}' --no-pager -o cat")
        assert f"split brain over: only one node answers for {VIP}" in journal, (name, journal)
    _until(_both_engines_up, 30, "the front door did not see both engines up again")


def _counter(name: str, comment: str) -> int:
    table = HOSTS[name].check_output("nft list table inet ironserve_frontend")
    line = next(line for line in table.splitlines() if f'comment "{comment}"' in line and " ip " in line)
    return int(line.split("counter packets ")[1].split()[0])


def test_each_plane_refuses_the_client(client):
    for name in NAMES:
        own = HOSTS[name].ansible.get_variables()["frontend_lab_address"].split("/")[0]
        # The engine listens there (the other front door reaches it), the client does not get through.
        other = HOSTS[next(n for n in NAMES if n != name)]
        assert "open" in other.check_output(
            f"python3 -c \"import socket; socket.create_connection(('{own}', 8000), timeout=3); print('open')\""
        )
        assert connect(client, own, 8000) == "timeout", name
        # The API only on the floating address: the node's own address is dropped, not answered with a reset.
        assert connect(client, own, 443) == "timeout", name
        # VRRP from the client, unicast to the node (a multicast advert for a group it has not joined is dropped
        # before any firewall): counted and dropped by the front door's table.
        before = _counter(name, "vrrp-from-elsewhere")
        subprocess.run(
            ["ip", "netns", "exec", client, sys.executable, str(SENDER), nic(client), "200", "1", own],
            check=True,
            capture_output=True,
            timeout=30,
        )
        assert _counter(name, "vrrp-from-elsewhere") > before, name
    assert connect(client, VIP, 443) == "open"


def test_another_cluster_with_our_router_id_on_the_segment_is_refused_before_any_change(client):
    digests = {name: host.check_output("sha256sum /etc/keepalived/keepalived.conf") for name, host in HOSTS.items()}
    router_id = HOSTS["front-a"].ansible.get_variables().get("service_frontend_vrrp_router_id", 51)
    sender = subprocess.Popen(
        ["ip", "netns", "exec", client, sys.executable, str(SENDER), nic(client), str(router_id), "90"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        result = ansible_playbook(INVENTORY, PLAYBOOK, {"service_frontend_vrrp_advert_seconds": 0.4})
    finally:
        sender.kill()
        sender.communicate()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert f"service_frontend_vrrp_router_id {router_id} is already in use on" in output, output[-3000:]
    assert f"{CLIENT_ADDRESS.split('/')[0]} announces it" in output, output[-3000:]
    after = {name: host.check_output("sha256sum /etc/keepalived/keepalived.conf") for name, host in HOSTS.items()}
    assert after == digests  # the changed advert interval was not written


def test_every_transition_is_in_the_journal_and_the_textfile():
    for name, host in HOSTS.items():
        journal = host.check_output("journalctl -t ironserve-vrrp --no-pager -o cat")
        assert "INSTANCE ironserve_service is now MASTER" in journal, (name, journal)
        assert "INSTANCE ironserve_service is now BACKUP" in journal, (name, journal)
        text = host.file("/var/lib/prometheus/node-exporter/ironserve_vrrp.prom").content_string
        states = [line for line in text.splitlines() if line.startswith("ironserve_vrrp_state{")]
        assert sum(1 for line in states if line.endswith(" 1")) == 1, text
        stamp = next(line for line in text.splitlines() if line.startswith("ironserve_vrrp_last_transition"))
        assert abs(time.time() - float(stamp.split()[-1])) < 3600


def test_the_ca_certificate_for_clients_is_in_the_run_artifacts():
    text = CA.read_text()
    assert text.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in text
    digest = hashlib.sha256(text.encode()).hexdigest()
    on_host = HOSTS["front-a"].check_output(f"sha256sum {shlex.quote('/etc/ironserve/frontend/ca/ca.crt')}")
    assert on_host.split()[0] == digest


def _key_lines(pem: str) -> list[str]:
    """The body lines of every private key in a PEM text: any one of them found elsewhere is a leak."""
    lines, inside = [], False
    for line in pem.splitlines():
        if line.startswith("-----BEGIN") and "PRIVATE KEY" in line:
            inside = True
        elif line.startswith("-----END"):
            inside = False
        elif inside and len(line) >= 40:
            lines.append(line)
    return lines


def test_no_secret_in_any_artifact_log_journal_or_process_list():
    # Last in the file: by now the journals hold every converge, failover, reboot and refusal of this scenario.
    ca_host = HOSTS["front-a"]
    secrets = {"API key": [_api_key()]}
    secrets["TLS server key"] = _key_lines(ca_host.file("/etc/ironserve/frontend/server.pem").content_string)
    secrets["site CA key"] = _key_lines(ca_host.check_output("cat /etc/ironserve/frontend/ca/*.key"))
    assert all(secrets.values()), {name: len(found) for name, found in secrets.items()}
    sources: dict[str, str] = {}
    for path in Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]).rglob("*"):
        if path.is_file():
            sources[str(path)] = path.read_text(errors="replace")
    bench_log = os.environ.get("IRONSERVE_BENCH_LOG")
    if bench_log:  # set when the bench runs the scenario: the converge and idempotence output so far
        sources[bench_log] = Path(bench_log).read_text(errors="replace")
        assert "idempotence" in sources[bench_log].lower()
    for name, host in HOSTS.items():
        sources[f"{name} journal"] = host.check_output("journalctl --no-pager -o verbose")
        sources[f"{name} processes"] = host.check_output("ps -eww -o args")
        sources[f"{name} /var/log"] = host.run("find /var/log -type f -name '*.log' -exec cat {} +").stdout
        assert "ironserve-vrrp" in sources[f"{name} journal"]
        assert "haproxy" in sources[f"{name} processes"]
    leaks = [
        f"{what} in {where}"
        for where, text in sources.items()
        for what, needles in secrets.items()
        if any(needle in text for needle in needles)
    ]
    print(f"\nsecrets scan: {len(sources)} sources ({sum(map(len, sources.values()))} characters), leaks: {leaks}")
    assert not leaks
