"""Disaster recovery on a serving pair with the cold tier on a machine of its own: tiering and backups go to dr-cold,
the primary (dr-a) is backed up on its timer, its disk destroyed (the machine recreated from the base image), the
three bad restores refused with nothing changed, and `ironserve restore` brings it back: the same API key and CA, the
weights as the snapshot's manifests recorded them, the metrics history, the front door sending it requests, as
standby. RTO (destroy to serving through the front door) and RPO (destroy back to the snapshot restored) printed.

The client is a network namespace this test makes on the lab's bridge; this machine has no address there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra
from lab_ansible import ansible_playbook
from lab_client import client_namespace, run_python

from ironserve.lab import lab as labs
from ironserve.lab.segment import interface_names
from ironserve.paths import ansible_env

# The folder, not Molecule's file: the drill's shared settings are an inventory source beside it (site-vars.yml).
INVENTORY = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
REPO = SCENARIO.parents[1]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
CA = EPHEMERAL / "artifacts" / "frontend" / "ca.crt"
NAMES = ["dr-a", "dr-b", "dr-cold"]
LAB = f"mol-{os.environ['MOLECULE_SCENARIO_NAME']}"
BRIDGE, _ = interface_names(LAB, NAMES)
CLIENT_ADDRESS = "10.98.0.200/24"
RESULTS = "/srv/warm/results"
RECORD = "/var/lib/ironserve/restore"


def _host(name: str):
    # A fresh connection each time: dr-a comes back with new host keys.
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


VARS = {name: _host(name).ansible.get_variables() for name in NAMES}
ADDRESS = {name: VARS[name]["monitoring_address"] for name in NAMES}
VIP = VARS["dr-a"]["service_frontend_address"].split("/")[0]
MEASURED: dict[str, float] = {}
# This run's restores only: Molecule keeps its ephemeral folder from one run of the scenario to the next.
ARTIFACTS = EPHEMERAL / "ironserve-artifacts"
shutil.rmtree(ARTIFACTS, ignore_errors=True)


def _said(result: subprocess.CompletedProcess) -> str:
    """What a run printed, its lines joined: Ansible wraps a long message at any word."""
    return " ".join((result.stdout + result.stderr).split())


@pytest.fixture(scope="module")
def client():
    with client_namespace(BRIDGE, CLIENT_ADDRESS) as namespace:
        yield namespace


def _until(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(1)
    return value


def _sh(name: str, command: str) -> str:
    return _host(name).check_output(command)


def _rclone(command: str) -> str:
    return _sh("dr-cold", f"/usr/local/bin/rclone --config /etc/ironserve/rclone.conf {command}")


def _fingerprint(name: str) -> str:
    """What a refused restore must leave as it was: installed packages, /etc/ironserve and /var/lib/ironserve (less
    the host's own backup state, which its timer rewrites every 30 s here)."""
    return _sh(
        name,
        "{ dpkg-query -W -f='${Package} ${Version} ${Status}\\n'; "
        "find /etc/ironserve /var/lib/ironserve -path /var/lib/ironserve/backup -prune -o -printf '%p %s %T@\\n' "
        "2>/dev/null | sort; } | sha256sum",
    )


def _restore(*options: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    argv = [
        str(Path(sys.executable).with_name("ironserve")),
        "restore",
        "--inventory",
        INVENTORY,
        "--site",
        str(SCENARIO / "site.yml"),
        "--host",
        "dr-a",
        "--plain",
        *options,
    ]
    environment = {**ansible_env(), "IRONSERVE_ARTIFACTS_DIR": str(ARTIFACTS)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=environment, check=False)


def _api_key(name: str = "dr-a") -> str:
    return _host(name).file("/etc/ironserve/inference/api-key.env").content_string.strip().split("=", 1)[1]


def _completions(client: str, key: str, count: int) -> list[int]:
    """Statuses of ``count`` completions through the front door, TLS verified against the site CA."""
    script = (
        "import http.client, json, ssl\n"
        f"context = ssl.create_default_context(cafile={str(CA)!r})\n"
        "statuses = []\n"
        f"for _ in range({count}):\n"
        f"    c = http.client.HTTPSConnection({VIP!r}, 443, timeout=10, context=context)\n"
        "    body = json.dumps({'model': 'deepseek-standin', 'prompt': 'a b', 'max_tokens': 2})\n"
        f"    headers = {{'Authorization': 'Bearer ' + {key!r}, 'Content-Type': 'application/json'}}\n"
        "    c.request('POST', '/v1/completions', body, headers)\n"
        "    statuses.append(c.getresponse().status)\n"
        "print(json.dumps(statuses))"
    )
    return json.loads(run_python(client, script, timeout=120))


def _engine_requests(name: str) -> float:
    """Requests the host's engine answered, read on the host (the front door's firewall keeps clients off it)."""
    url = f"http://{ADDRESS[name]}:8000/metrics"
    text = _sh(name, f"python3 -c \"import urllib.request; print(urllib.request.urlopen('{url}').read().decode())\"")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("vllm:request_success"))


def _prometheus(client: str, name: str, expr: str, at: float) -> list[dict]:
    from urllib.parse import quote

    url = f"http://{ADDRESS[name]}:9090/api/v1/query?query={quote(expr)}&time={at}"
    answer = json.loads(
        run_python(client, f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())")
    )
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _metric(name: str, metric: str) -> float:
    text = _host(name).file("/var/lib/prometheus/node-exporter/ironserve_backup_cold.prom").content_string
    return float(next(line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(metric + "{")))


def test_the_cold_tier_runs_on_its_own_machine_and_the_pair_reaches_it_by_url():
    assert _host("dr-cold").service("ironserve-seaweedfs").is_running
    for name in ("dr-a", "dr-b"):
        host = _host(name)
        assert not host.file("/etc/systemd/system/ironserve-seaweedfs.service").exists
        assert not host.socket("tcp://0.0.0.0:8333").is_listening
        assert host.file("/etc/ironserve/s3-credentials.json").mode == 0o600
        assert "endpoint = http://10.98.0.13:8333" in host.file("/etc/ironserve/rclone.conf").content_string
    # Both hosts' repositories live in dr-cold's backups bucket.
    assert {"dr-a/", "dr-b/"} <= set(_rclone("lsf cold:backups/").split())


def test_aged_results_are_tiered_to_the_other_machine():
    old = f"{RESULTS}/tiering-probe.txt"
    _sh("dr-a", f"mkdir -p {RESULTS} && echo aged > {old} && touch -d '3 days ago' {old}")
    _sh("dr-a", "systemctl start ironserve-tiering.service")
    assert "tiering-probe.txt" in _rclone(f"lsf cold:archive/dr-a{RESULTS}/")
    assert not _host("dr-a").file(old).exists


def test_backups_run_on_their_timers_and_their_metrics_reach_prometheus(client):
    for name in ("dr-a", "dr-b"):
        host = _host(name)
        assert host.service("ironserve-backup-cold.timer").is_running
        assert host.service("ironserve-backup-check-cold.timer").is_enabled
        assert host.file("/etc/ironserve/backup/password").mode == 0o600
        _until(lambda name=name: _metric(name, "ironserve_backup_last_run_success") == 1, 120, f"{name}'s backup")
        assert time.time() - _metric(name, "ironserve_backup_last_success_timestamp_seconds") < 120
    # Scraped: the BackupFailed and BackupTooOld alerts read these series.
    _until(
        lambda: _prometheus(
            client, "dr-b", 'ironserve_backup_last_run_success{host="dr-a",target="cold"}', time.time()
        ),
        60,
        "dr-a's backup metrics in Prometheus",
    )


def test_a_restore_onto_a_host_that_serves_is_refused_with_nothing_changed():
    before = _fingerprint("dr-a")
    refused = _restore(timeout=600)
    assert refused.returncode != 0, refused.stdout
    assert "dr-a still serves" in _said(refused), refused.stdout[-3000:]
    assert "--force" in _said(refused)
    assert _fingerprint("dr-a") == before


@pytest.fixture(scope="module")
def destroyed(client):
    """dr-a after a change that its timer backed up and one it did not, its power cut, its disk blank again."""
    before = {
        "key": _api_key(),
        "ca": _sh("dr-a", "cat /etc/ironserve/frontend/ca/ca.crt"),
        "weights": _sh(
            "dr-a", "cd /srv/models/standin-model/current/ && sha256sum $(find . -type f ! -name '.*' | sort)"
        ),
    }
    # A change the next timer run backs up, then one made after it: the second is what the RPO loses.
    kept = f"kept-{time.time():.0f}"
    _sh("dr-a", f"mkdir -p {RESULTS} && echo kept > {RESULTS}/{kept}")
    written = time.time()
    _until(lambda: _metric("dr-a", "ironserve_backup_last_success_timestamp_seconds") > written, 120, "a backup of it")
    lost = f"lost-{time.time():.0f}"
    _sh("dr-a", f"echo lost > {RESULTS}/{lost}")
    cut = labs.power_off(LAB, "dr-a")
    labs.wipe_disk(LAB, "dr-a")
    labs.power_on(LAB, "dr-a")
    assert not _host("dr-a").file("/etc/ironserve").exists
    # What a site's installer gives a rebuilt host (PXE, its management address); the restore does the rest.
    given = ansible_playbook(INVENTORY, SCENARIO / "installer.yml", limit="dr-a")
    assert given.returncode == 0, given.stdout[-3000:]
    return {**before, "cut": cut, "kept": kept, "lost": lost}


def test_a_damaged_repository_is_found_by_restic_check_and_not_restored_from(destroyed):
    packs = [p for p in _rclone("lsf -R --files-only cold:backups/dr-a/data/").split() if p]
    assert packs
    pack = f"cold:backups/dr-a/data/{packs[0]}"
    _rclone(f"copyto {pack} /root/pack.good")
    _sh(
        "dr-cold",
        "cp /root/pack.good /root/pack.bad && printf 'damaged' | dd of=/root/pack.bad bs=1 seek=100 conv=notrunc",
    )
    _rclone(f"copyto /root/pack.bad {pack}")
    try:
        before = _fingerprint("dr-a")
        refused = _restore(timeout=600)
        output = _said(refused)
        assert refused.returncode != 0, refused.stdout[-3000:]
        assert "damaged or unreadable, so not restoring from it" in output, output[-3000:]
        assert _fingerprint("dr-a") == before
        assert not _host("dr-a").package("restic").is_installed
    finally:
        _rclone(f"copyto /root/pack.good {pack}")


def test_a_snapshot_older_than_the_sites_limit_is_refused(destroyed):
    before = _fingerprint("dr-a")
    # The site's limit made a second, so the newest snapshot is older than it (the CLI runs this same playbook).
    refused = ansible_playbook(
        INVENTORY,
        REPO / "playbooks" / "restore.yml",
        {"restore_host": "dr-a", "backup_restore_max_age_hours": 1 / 3600},
    )
    assert refused.returncode != 0
    assert "older than backup_restore_max_age_hours" in _said(refused), refused.stdout[-3000:]
    assert "--accept-old" in _said(refused)
    assert _fingerprint("dr-a") == before


def test_the_restore_brings_the_host_back_as_it_was(destroyed, client):
    began = time.time()
    restored = _restore()
    restore_seconds = time.time() - began
    assert restored.returncode == 0, (restored.stdout + restored.stderr)[-5000:]
    host = _host("dr-a")
    # The same secrets: clients keep their key, and the CA they trust validates the host's certificate.
    assert _api_key() == destroyed["key"]
    assert host.file("/etc/ironserve/frontend/ca/ca.crt").content_string.strip() == destroyed["ca"].strip()
    host.check_output("openssl verify -CAfile /etc/ironserve/frontend/ca/ca.crt /etc/ironserve/frontend/ca/server.crt")
    # The weights staged again from the cold tier, matching what the snapshot's manifests recorded.
    weights = host.check_output(
        "cd /srv/models/standin-model/current/ && sha256sum $(find . -type f ! -name '.*' | sort)"
    )
    assert weights == destroyed["weights"]
    report = json.loads(host.check_output(f"cat {RECORD}/*/report.json"))
    assert report["weights"]["same"] == ["/srv/models/standin-model/rev1"], report
    assert report["weights"]["different"] == []
    assert report["weights"]["missing"] == []
    # The change the last backup held is back; the one made after it is what the RPO lost.
    assert host.file(f"{RESULTS}/{destroyed['kept']}").exists
    assert not host.file(f"{RESULTS}/{destroyed['lost']}").exists
    # The metrics history up to the snapshot: dr-a's own Prometheus has samples from before its destroy.
    before_cut = report["time_unix"] - 10
    history = _prometheus(client, "dr-a", 'count_over_time(up{job="node",host="dr-b"}[30s])', before_cut)
    assert history, "no samples from before the destroy in the restored Prometheus"
    assert float(history[0]["value"][1]) > 0, history
    # In service again: the front door (now on dr-b) sends it requests, and it rejoined as standby.
    served = _engine_requests("dr-a")

    def serving() -> bool:
        statuses = _completions(client, destroyed["key"], 6)
        assert set(statuses) == {200}, statuses
        return _engine_requests("dr-a") > served

    _until(serving, 300, "the front door sending dr-a requests")
    back = time.time()
    assert f" {VIP}/" not in host.check_output("ip -4 -o addr show")
    assert f" {VIP}/" in _host("dr-b").check_output("ip -4 -o addr show")
    MEASURED["rto"] = back - destroyed["cut"]
    MEASURED["rpo"] = destroyed["cut"] - report["time_unix"]
    print(
        f"\nDR drill: RTO {MEASURED['rto']:.1f} s (power cut to requests served through the front door), "
        f"RPO {MEASURED['rpo']:.1f} s (power cut back to the snapshot restored, {report['short_id']}; bounded by "
        f"the backup schedule, {VARS['dr-a']['backup_cold_schedule']}); "
        f"ironserve restore itself {restore_seconds:.1f} s"
    )


def test_the_restored_host_backs_up_again():
    _until(
        lambda: _metric("dr-a", "ironserve_backup_last_success_timestamp_seconds") > time.time() - 90,
        120,
        "a backup from the restored host",
    )
    # Its new snapshots join the restored ones in the same repository.
    listed = _sh("dr-b", "ironserve-backup restore-plan cold dr-a")
    assert json.loads(listed)["check"] == "ok", listed


def test_a_first_host_rebuilt_without_its_backup_gets_the_pairs_key_and_no_new_ca():
    """Without a restore: the API key comes from the host that still has it, and a new site CA is refused."""
    key, pem = _api_key("dr-b"), _sh("dr-b", "sha256sum /etc/ironserve/frontend/server.pem")
    _sh("dr-a", "mv /etc/ironserve/inference/api-key.env /etc/ironserve/frontend/ca/ca.key /root/")
    try:
        again = ansible_playbook(INVENTORY, SCENARIO / "lab_hosts.yml")
        assert again.returncode == 0, again.stdout[-3000:]
        assert _api_key("dr-a") == key
        refused = ansible_playbook(INVENTORY, REPO / "playbooks" / "frontend.yml")
        assert refused.returncode != 0
        assert "dr-a has no site CA key" in _said(refused), refused.stdout[-3000:]
        assert "dr-b serve a certificate that CA made" in _said(refused)
        assert _sh("dr-b", "sha256sum /etc/ironserve/frontend/server.pem") == pem
        assert not _host("dr-a").file("/etc/ironserve/frontend/ca/ca.key").exists
    finally:
        _sh("dr-a", "mv /root/ca.key /etc/ironserve/frontend/ca/ca.key")


def test_no_secret_in_what_the_restores_left_on_the_controller():
    """Every restore's run record and ansible-runner artifacts (events, outputs), read for the secrets it handled."""
    secrets = {
        "cold tier S3 access key": VARS["dr-a"]["cold_tier_s3_access_key"],
        "cold tier S3 secret key": VARS["dr-a"]["cold_tier_s3_secret_key"],
        "restic password": VARS["dr-a"]["backup_password"],
        "API key": _api_key("dr-b"),
    }
    files = [p for p in ARTIFACTS.rglob("*") if p.is_file()]
    assert len(files) > 20, files
    for path in files:
        text = path.read_text(errors="replace")
        for what, value in secrets.items():
            assert value not in text, f"the {what} is in {path}"
