"""A lab machine's real kernel state, seen by node_exporter and judged by the monitoring role's alert rules.

For the faults the monitoring scenario's light machines cannot make (an md member failed, an RDMA port down: they share
this machine's kernel, which has neither md nor RDMA), the scenarios that own those faults on QEMU machines (storage,
network) run the same exporter (Debian's, at the role's pin, copied in and run for the test on loopback only; for RDMA
with the role's own port state writer behind its textfile collector) and feed what it reports to ``promtool test
rules`` with the same rules (ironserve.monitoring at the role's defaults): the alert must fire on the fault and be
quiet once it is repaired.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from debian_tools import tool
from rule_files import DEFAULTS, FILES, write_rules

from ironserve import monitoring

EXPORTER = "/usr/local/sbin/ironserve-test-node-exporter"
UNIT = "ironserve-test-node-exporter"
PORT = 19100
URL = f"http://127.0.0.1:{PORT}/metrics"
SCRAPE = f"import urllib.request; print(urllib.request.urlopen('{URL}', timeout=10).read().decode())"


def start_exporter(host, *collectors: str, flags: tuple[str, ...] = ()) -> None:
    """node_exporter on 127.0.0.1 with only ``collectors`` (and their ``flags``), as a transient unit (gone with
    stop_exporter)."""
    binary = tool("prometheus-node-exporter", "prometheus-node-exporter")
    copied = host.ansible("ansible.builtin.copy", f"src={binary} dest={EXPORTER} mode=0755", check=False, become=True)
    assert not copied.get("failed"), copied
    arguments = " ".join([*(f"--collector.{name}" for name in collectors), *flags])
    host.check_output(
        f"systemd-run --unit {UNIT} {EXPORTER} --collector.disable-defaults {arguments} "
        f"--web.listen-address=127.0.0.1:{PORT}"
    )
    for _ in range(50):
        if host.run(f'python3 -c "{SCRAPE}"').rc == 0:
            return
        host.run("sleep 0.2")
    raise AssertionError(f"{UNIT} did not answer: {host.run(f'journalctl -u {UNIT} --no-pager').stdout[-2000:]}")


def stop_exporter(host) -> None:
    host.run(f"systemctl stop {UNIT}; systemctl reset-failed {UNIT}; rm -f {EXPORTER}")


def scrape(host, names: tuple[str, ...], hostname: str) -> dict[str, float]:
    """The samples of metrics ``names`` as Prometheus would store them from this host (its host, job and instance
    labels added, as the role's file-based discovery gives them)."""
    text = host.check_output(f'python3 -c "{SCRAPE}"')
    extra = f'host="{hostname}",instance="{hostname}:9100",job="node"'
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if match and match.group(1) in names:
            labels = match.group(2)[1:-1] if match.group(2) else ""
            found[f"{match.group(1)}{{{labels + ',' if labels else ''}{extra}}}"] = float(match.group(3))
    assert found, f"node_exporter reported none of {names}:\n{text[-3000:]}"
    return found


def alert_labels(name: str) -> dict[str, str]:
    rule = next(r for g in monitoring.alert_rules(DEFAULTS)["groups"] for r in g["rules"] if r["alert"] == name)
    return rule["labels"]


def check(folder: Path, samples: dict[str, float], alert: str, expected: list[dict[str, str]]) -> None:
    """``promtool test rules``: with ``samples`` held for ten minutes, ``alert`` fires with exactly the ``expected``
    label sets (its own labels added), or none when ``expected`` is empty."""
    write_rules(folder, annotations=False)
    test = {
        "rule_files": FILES,
        "evaluation_interval": "30s",
        "tests": [
            {
                "interval": "30s",
                "input_series": [{"series": series, "values": f"{value:g}x20"} for series, value in samples.items()],
                "alert_rule_test": [
                    {
                        "alertname": alert,
                        "eval_time": "10m",
                        "exp_alerts": [{"exp_labels": {**alert_labels(alert), **labels}} for labels in expected],
                    }
                ],
            }
        ],
    }
    (folder / "live.test.yml").write_text(json.dumps(test))
    result = subprocess.run(
        [str(tool("promtool", "promtool")), "test", "rules", "live.test.yml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{alert} on {json.dumps(samples)}:\n{result.stdout}{result.stderr}"
