"""The monitoring role's rules and configuration as a two-host site gets them, checked by Debian's own promtool and
amtool at the pinned versions (tests/debian_tools.py): every alert fires on its fault and stays quiet beside it
(tests/promtool/alerts.test.yml), the rendered files pass the checks the hosts run before Prometheus reads them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from debian_tools import tool
from role_templates import render
from rule_files import DEFAULTS, write_rules

from ironserve import monitoring, scaling

REPO = Path(__file__).resolve().parents[1]
ROLE = REPO / "roles" / "monitoring"
TESTS = REPO / "tests" / "promtool" / "alerts.test.yml"
RECORDS = {
    "gpu01": {"url": "http://198.51.100.11:8000", "serves_api": True},
    "gpu02": {"url": "http://198.51.100.12:8000", "serves_api": True},
    "gpu03": {"url": "http://198.51.100.13:8000", "serves_api": False},  # rank 1 of an engine spanning nodes
}
ADDRESSES = {"gpu01": "192.0.2.11", "gpu02": "192.0.2.12", "gpu03": "192.0.2.13"}


# What the exporters give (the rest comes from the recording rules): node_exporter, DCGM, the textfile metrics.
EXPORTED = (
    "node_",
    "DCGM_FI_",
    "DCGM_EXP_",
    "ironserve_vrrp_",
    "ironserve_canary_",
    "ironserve_engine_replica",
    "ironserve_backup_",
    "ironserve_rdma_",
)


def _rules(rule_file: dict) -> list[dict]:
    return [rule for group in rule_file["groups"] for rule in group["rules"]]


RECORDED = {rule["record"] for rule in _rules(monitoring.recording_rules())}
ALERTS = _rules(monitoring.alert_rules(DEFAULTS))


def _run(argv: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def promtool() -> Path:
    return tool("promtool", "promtool")


@pytest.fixture(scope="module")
def amtool() -> Path:
    return tool("prometheus-alertmanager", "amtool")


def test_every_alert_fires_on_its_fault_and_stays_quiet_beside_it(promtool, tmp_path):
    write_rules(tmp_path, annotations=False)
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = _run([promtool, "test", "rules", TESTS.name], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases = [case for test in yaml.safe_load(TESTS.read_text())["tests"] for case in test.get("alert_rule_test", [])]
    alerts = {rule["alert"] for rule in ALERTS}
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alerts - fired == set(), "alerts no test makes fire"
    assert alerts - quiet == set(), "alerts no test shows quiet"


def test_the_rule_files_with_their_runbooks_pass_promtool(promtool, tmp_path):
    write_rules(tmp_path)
    result = _run([promtool, "check", "rules", "ironserve-recording.yml", "ironserve-alerts.yml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for rule in ALERTS:
        assert rule["annotations"]["runbook"], rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]


def test_every_alert_reads_only_what_the_exporters_and_recording_rules_give():
    for rule in ALERTS:
        for name in _metric_names(rule["expr"]):
            assert name in RECORDED or name == "up" or name.startswith(EXPORTED), (rule["alert"], name)


def _metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: label matchers, grouping clauses and functions taken out."""
    import re

    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    bare = re.sub(r"\b(by|on|ignoring|without)\s*\([^)]*\)", "", bare)
    words = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare)
    functions = {"changes", "deriv", "increase", "rate", "sum", "max", "avg", "count", "and", "or", "unless"}
    functions |= {"histogram_quantile", "stddev_over_time", "avg_over_time", "last_over_time", "vector", "time"}
    return {word for word in words if word not in functions}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("monitoring")
    variables = {
        "inventory_hostname": "gpu01",
        "_monitoring_address": "192.0.2.11",
        "_monitoring_addresses": ADDRESSES,
        "_monitoring_servers": ["gpu01", "gpu02"],
        "_retention_size": "51200MB",
        "_peers": ["192.0.2.12"],
        "monitoring_alert_webhooks": ["https://oncall.example.org/hook?token=x"],
        "monitoring_scaler_url": "http://192.0.2.5:9096/alertmanager",
        "monitoring_scaler_token": "scaler-token-0123456789",
    }
    names = ("prometheus.yml", "alertmanager.yml", "prometheus.default", "prometheus-alertmanager.default")
    names += ("prometheus-node-exporter.default",)
    vars_files = (ROLE / "defaults/main.yml", ROLE / "vars/Debian.yml", ROLE / "vars/main.yml")
    render(folder, {ROLE / "templates" / f"{name}.j2": folder / name for name in names}, variables, vars_files)
    for kind in ("recording", "alerts"):
        render(
            folder,
            {ROLE / "templates/generated.j2": folder / f"ironserve-{kind}.yml"},
            {**variables, "_kind": kind},
            vars_files,
        )
    return folder


def test_the_rendered_rule_files_are_the_rules(rendered):
    assert yaml.safe_load((rendered / "ironserve-alerts.yml").read_text()) == monitoring.alert_rules(DEFAULTS)
    assert yaml.safe_load((rendered / "ironserve-recording.yml").read_text()) == monitoring.recording_rules()


def test_the_rendered_prometheus_configuration_passes_promtool(rendered, promtool):
    config = yaml.safe_load((rendered / "prometheus.yml").read_text())
    # The rule files sit in /etc/prometheus/rules on a host; here beside the configuration.
    config["rule_files"] = [str(rendered / Path(path).name) for path in config["rule_files"]]
    (rendered / "check.yml").write_text(yaml.safe_dump(config))
    result = _run([promtool, "check", "config", rendered / "check.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_servers_and_what_every_host_registers(rendered):
    config = yaml.safe_load((rendered / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    static = {
        name: {(c["labels"]["host"], c["targets"][0]) for c in job["static_configs"]}
        for name, job in jobs.items()
        if "static_configs" in job
    }
    assert static == {
        "prometheus": {("gpu01", "192.0.2.11:9090"), ("gpu02", "192.0.2.12:9090")},
        "alertmanager": {("gpu01", "192.0.2.11:9093"), ("gpu02", "192.0.2.12:9093")},
    }
    for job in ("node", "engine", "gpu"):
        assert jobs[job]["file_sd_configs"] == [
            {"files": [f"/etc/prometheus/targets/{job}/*.yml"], "refresh_interval": "1m"}
        ]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "192.0.2.11:9093",
        "192.0.2.12:9093",
    ]
    assert (config["global"]["scrape_interval"], config["global"]["evaluation_interval"]) == ("30s", "30s")


def test_each_host_registers_its_exporter_engine_and_gpus(tmp_path, promtool):
    settings = {**DEFAULTS}
    gpu01 = monitoring.host_targets("gpu01", "192.0.2.11", settings, RECORDS["gpu01"], True)
    assert gpu01 == {
        "node": [{"targets": ["192.0.2.11:9100"], "labels": {"host": "gpu01"}}],
        "engine": [{"targets": ["198.51.100.11:8000"], "labels": {"host": "gpu01", "__scheme__": "http"}}],
        "gpu": [{"targets": ["192.0.2.11:9400"], "labels": {"host": "gpu01"}}],
    }
    # Rank 1 of an engine spanning nodes serves no API and no metrics; no GPU exporter: both files withdrawn.
    gpu03 = monitoring.host_targets("gpu03", "192.0.2.13", settings, RECORDS["gpu03"], False)
    assert (gpu03["engine"], gpu03["gpu"]) == ([], [])
    assert monitoring.host_targets("cold01", "192.0.2.20", settings, None, False)["engine"] == []
    # The engines scaling left serving, each scraped (its scale state says how many of its slots serve).
    slots = [{"slot": n, "url": f"http://198.51.100.11:{8000 + n}"} for n in range(3)]
    scaled = {**RECORDS["gpu01"], "replica_slots": slots}
    engines = monitoring.host_targets("gpu01", "192.0.2.11", settings, scaled, True, {"replicas": 2})["engine"]
    assert engines[0]["targets"] == ["198.51.100.11:8000", "198.51.100.11:8001"]
    # Prometheus reads the files as the role writes them (promtool checks a configuration that names them).
    for job, groups in gpu01.items():
        (tmp_path / job).mkdir()
        (tmp_path / job / "gpu01.yml").write_text(yaml.safe_dump(groups))
    config = monitoring.prometheus_config(settings, {"gpu01": "192.0.2.11"}, ["gpu01"])
    config["rule_files"] = []
    for job in config["scrape_configs"]:
        if "file_sd_configs" in job:
            job["file_sd_configs"][0]["files"] = [str(tmp_path / job["job_name"] / "*.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = _run([promtool, "check", "config", tmp_path / "prometheus.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rendered_alertmanager_configuration_passes_amtool(rendered, amtool):
    result = _run([amtool, "check-config", rendered / "alertmanager.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((rendered / "alertmanager.yml").read_text())
    assert config["route"]["receiver"] == "webhooks"
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert receivers["webhooks"]["webhook_configs"][0]["url"] == "https://oncall.example.org/hook?token=x"
    # The scale alerts, and only they, go to the scaler (their label: ironserve.scaling.ACTION_LABEL).
    [scale_route] = config["route"]["routes"]
    assert scale_route["receiver"] == "scaler"
    assert scale_route["matchers"] == [f'{scaling.ACTION_LABEL}=~"out|in"']
    assert receivers["scaler"]["webhook_configs"] == [
        {
            "url": "http://192.0.2.5:9096/alertmanager",
            "send_resolved": False,
            "http_config": {"authorization": {"type": "Bearer", "credentials": "scaler-token-0123456789"}},
        }
    ]
    scale_alerts = [r for g in monitoring.alert_rules(DEFAULTS)["groups"] for r in g["rules"] if "scale" in r["labels"]]
    assert {r["labels"][scaling.ACTION_LABEL] for r in scale_alerts} == set(scaling.DIRECTIONS)


def test_every_listener_binds_the_monitoring_address_only(rendered):
    args = {name: (rendered / name).read_text() for name in rendered.iterdir() if name.suffix == ".default"}
    node = (rendered / "prometheus-node-exporter.default").read_text()
    prometheus = (rendered / "prometheus.default").read_text()
    alertmanager = (rendered / "prometheus-alertmanager.default").read_text()
    assert "--web.listen-address=192.0.2.11:9100 " in node
    assert "--web.listen-address=192.0.2.11:9090 " in prometheus
    assert "--storage.tsdb.retention.time=30d --storage.tsdb.retention.size=51200MB " in prometheus
    assert "--web.enable-lifecycle" not in prometheus
    assert "--web.enable-admin-api" not in prometheus
    assert "--web.listen-address=192.0.2.11:9093 " in alertmanager
    assert "--cluster.listen-address=192.0.2.11:9094 --cluster.peer=192.0.2.12:9094" in alertmanager
    assert args is not None


def test_retention_takes_its_share_of_the_filesystem_under_the_data():
    assert monitoring.retention_size(200 * 1024**3, 0.5) == "102400MB"
    assert monitoring.retention_size(" 107374182400\n", 0.25) == "25600MB"  # df's output as read
    assert monitoring.retention_size(1024**2, 0.5) == "512MB"
    assert monitoring.retention_size("", 0.5) == ""


def test_listen_address_prefers_the_setting_then_the_management_address_then_the_default_route():
    facts = {"default_ipv4": {"address": "10.0.0.5"}}
    assert monitoring.listen_address("192.0.2.20", "192.0.2.11/24", facts) == "192.0.2.20"
    assert monitoring.listen_address("", "192.0.2.11/24", facts) == "192.0.2.11"
    assert monitoring.listen_address("", "", facts) == "10.0.0.5"
    assert monitoring.listen_address("", "", {}) == ""


def test_addresses_of_hosts_outside_the_run_come_from_their_inventory():
    hostvars = {
        "a": {"_monitoring_address": "192.0.2.11"},
        "b": {"mgmt_network_address": "192.0.2.12/24"},
        "c": {},
    }
    assert monitoring.addresses(hostvars, ["a", "b", "c"]) == {"a": "192.0.2.11", "b": "192.0.2.12", "c": ""}


SETTINGS = {key: value for key, value in DEFAULTS.items() if not isinstance(value, list)}


@pytest.mark.parametrize(
    ("change", "servers", "addresses", "expected"),
    [
        ({}, ["a"], {"a": "192.0.2.11"}, []),
        (
            {"monitoring_scrape_interval_seconds": 500, "monitoring_scale_out_after_seconds": 600},
            ["a"],
            {"a": "192.0.2.11"},
            ["monitoring_scrape_interval_seconds"],
        ),
        (
            {"monitoring_scaler_url": "http://192.0.2.5:9096/alertmanager"},
            ["a"],
            {"a": "192.0.2.11"},
            ["monitoring_scaler_url is set without monitoring_scaler_token", "--token-file"],
        ),
        (
            {"monitoring_scale_in_kv_cache_ratio": 0.95},
            ["a"],
            {"a": "192.0.2.11"},
            ["monitoring_scale_in_kv_cache_ratio (0.95) must be below monitoring_scale_out_kv_cache_ratio (0.9)"],
        ),
        (
            {"monitoring_evaluation_interval_seconds": 60},
            ["a"],
            {"a": "192.0.2.11"},
            ["monitoring_evaluation_interval_seconds"],
        ),
        (
            {"monitoring_prometheus_retention_fraction": 1},
            ["a"],
            {"a": "192.0.2.11"},
            ["monitoring_prometheus_retention_fraction"],
        ),
        # No monitoring server (no such group, no inference host): exporters only, for a site's own Prometheus.
        ({}, [], {"a": "192.0.2.11"}, []),
        ({}, ["a"], {"a": "192.0.2.11", "b": ""}, ["b has no address", "monitoring_address"]),
        ({}, ["a"], {"a": "192.0.2.11/24"}, ["monitoring_address '192.0.2.11/24' is not an IP address"]),
        (
            {"monitoring_alertmanager_port": 9090},
            ["a"],
            {"a": "192.0.2.11"},
            ["monitoring_prometheus_port and monitoring_alertmanager_port are both 9090"],
        ),
    ],
)
def test_problems_name_the_variable(change, servers, addresses, expected):
    found = monitoring.problems({**SETTINGS, **change}, addresses, servers)
    if not expected:
        assert found == []
    else:
        assert len(found) == 1, found
        assert all(text in found[0] for text in expected), found


def test_docs_give_every_alert_its_runbook():
    text = (REPO / "docs" / "monitoring.md").read_text()
    for rule in ALERTS:
        section = text.split(f"### {rule['alert']}\n", 1)
        assert len(section) == 2, f"docs/monitoring.md has no section for {rule['alert']}"
        assert rule["annotations"]["runbook"] in section[1].split("### ", 1)[0], rule["alert"]


def test_every_panel_reads_only_what_the_exporters_and_recording_rules_give():
    for dimension, title, expr, _ in monitoring.PANELS:
        for name in _metric_names(expr):
            assert name in RECORDED or name.startswith(EXPORTED), (dimension, title, name)
    assert {d for d, _, _, _ in monitoring.PANELS} == {"resources", "performance", "business", "quality", "cost"}


def test_the_console_and_the_grafana_dashboard_carry_every_panel():
    console = monitoring.generated_file("console", DEFAULTS)
    grafana = json.loads(monitoring.generated_file("grafana", DEFAULTS))
    charts = [p for p in grafana["panels"] if p["type"] == "timeseries"]
    assert [(p["title"], p["targets"][0]["expr"]) for p in charts] == [(t, e) for _, t, e, _ in monitoring.PANELS]
    assert len({p["id"] for p in grafana["panels"]}) == len(grafana["panels"])
    for _, title, expr, _ in monitoring.PANELS:
        assert f"<th>{title}</th>" in console
        assert f"printf `({expr}) and on(host)" in console
    # Go's template language: every action opened is closed.
    assert console.count("{{") == console.count("}}")
    assert console.count("{{ range ") + console.count("{{ with ") == console.count("{{ end }}")


def test_the_dcgm_counters_carry_every_field_the_rules_and_panels_read():
    csv = monitoring.generated_file("dcgm-counters", DEFAULTS)
    fields = [line.split(",")[0].strip() for line in csv.splitlines() if line and not line.startswith("#")]
    # dcgm-exporter refuses a line of other than three fields (ExtractCounters): no comma in a help text.
    assert all(len(line.split(",")) == 3 for line in csv.splitlines() if line and not line.startswith("#"))
    read = set()
    for rule in ALERTS + _rules(monitoring.recording_rules()):
        read |= {name for name in _metric_names(rule["expr"]) if name.startswith("DCGM_")}
    read |= {name for _, _, expr, _ in monitoring.PANELS for name in _metric_names(expr) if name.startswith("DCGM_")}
    assert read
    assert read <= set(fields), read - set(fields)
    # What the issue names: Xid, ECC, row remapping, throttling (clock events), power, energy, NVLink traffic.
    for field in (
        "DCGM_FI_DEV_XID_ERRORS",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "DCGM_EXP_CLOCK_EVENTS_COUNT",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    ):
        assert field in fields


def test_the_dcgm_exporter_runs_on_every_gpu_on_the_monitoring_address_only(tmp_path):
    variables = {
        "_monitoring_address": "192.0.2.11",
        "ansible_managed": "managed",
    }
    vars_files = (ROLE / "defaults/main.yml", ROLE / "vars/Debian.yml", ROLE / "vars/main.yml")
    unit = tmp_path / "ironserve-dcgm-exporter.service"
    render(tmp_path, {ROLE / "templates/ironserve-dcgm-exporter.service.j2": unit}, variables, vars_files)
    start = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    argv = start.removeprefix("ExecStart=").split()
    image = DEFAULTS["monitoring_dcgm_exporter_image"]
    assert argv[:2] == ["/usr/bin/docker", "run"]
    assert argv[argv.index("--gpus") + 1] == "all"
    assert argv[argv.index("--cap-add") + 1] == "SYS_ADMIN"
    assert argv[argv.index("--network") + 1] == "host"
    # Everything after the image goes to dcgm-exporter itself (the image's entrypoint passes "$@" on).
    assert argv[argv.index(image) + 1 :] == [
        "--collectors",
        monitoring.DCGM_COUNTERS_IN_CONTAINER,
        "--address",
        "192.0.2.11:9400",
    ]
    assert f"/etc/ironserve/monitoring/dcgm-counters.csv:{monitoring.DCGM_COUNTERS_IN_CONTAINER}:ro" in argv


def test_the_bundle_copies_the_exporter_the_role_runs():
    from ironserve.bundle import images

    assert DEFAULTS["monitoring_dcgm_exporter_image"] == images.DCGM_EXPORTER_IMAGE
    assert DEFAULTS["monitoring_dcgm_exporter_image"] in images.default_images()
