"""Monitoring's rules: where each exporter listens, what Prometheus scrapes, how much disk its history may take.

One home for them: the monitoring role calls these through filters, and the tests call them directly. Facts behind
the metric names (vLLM 0.11.0, SGLang 0.5.3, Debian 13's Prometheus 2.53 and node exporter 1.9) are in
docs/notes/monitoring-facts.md.
"""

from __future__ import annotations

import ipaddress
import json
import math
from typing import Any
from urllib.parse import urlsplit

import yaml

from ironserve import scaling
from ironserve.engines import host_port

# Every target carries the inventory name of its host under this label: rules join the exporters of one host on
# it (an engine, its GPUs' exporter and node_exporter listen on different ports, so ``instance`` differs).
HOST_LABEL = "host"
# The rule files the role writes, in the order Prometheus loads them (absolute: promtool checks a copy elsewhere).
RULE_FILES = ("/etc/prometheus/rules/ironserve-recording.yml", "/etc/prometheus/rules/ironserve-alerts.yml")
# Prometheus's own floor for its TSDB size limit, and what it may never take of its filesystem: the rest is for
# the write-ahead log, compaction's temporary copies (up to the largest block again) and the host.
MIN_RETENTION_BYTES = 512 * 1024**2
FRACTION_RANGE = (0.05, 0.9)


def listen_address(explicit: str, mgmt_address: str, facts: dict[str, Any]) -> str:
    """Where this host's exporters listen and Prometheus reaches them: ``monitoring_address`` if set, else the
    management network's static address, else the address of the host's default route ("" if none)."""
    for candidate in (explicit, mgmt_address):
        if candidate:
            try:
                return str(ipaddress.ip_interface(candidate).ip)
            except ValueError:
                return candidate  # problems() names it
    return str((facts.get("default_ipv4") or {}).get("address", ""))


def addresses(hostvars: Any, hosts: list[str]) -> dict[str, str]:
    """Each host's exporter address: what this run worked out for the hosts in it (``_monitoring_address``), and for
    a host outside it (a --limit) what its inventory says (monitoring_address, mgmt_network_address); "" if none."""
    found = {}
    for host in hosts:
        known = hostvars[host]
        worked_out = known.get("_monitoring_address") or ""
        found[host] = worked_out or listen_address(
            known.get("monitoring_address") or "", known.get("mgmt_network_address") or "", {}
        )
    return found


# Each host registers its own targets with every monitoring server, one file per job (Prometheus's file-based
# discovery): a run limited to some hosts, or one that cannot reach a host, rewrites only the files of the hosts in
# it, and the others stay scraped. Jobs whose targets come from the hosts themselves:
TARGET_JOBS = ("node", "engine", "gpu")
TARGETS_DIR = "/etc/prometheus/targets"


def host_targets(
    host: str,
    address: str,
    settings: dict[str, Any],
    record: dict[str, Any] | None,
    gpu_exporter: bool,
    scale_state: dict[str, Any] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """This host's file-based discovery content per job (an empty list: the job has no target here, its file goes):
    its node_exporter; its engines that serve, at the addresses and ports of its record
    (/etc/ironserve/inference/ready.json; how many serve: its scale state, ironserve.scaling) when it serves the API
    (vLLM and SGLang answer /metrics there without the API key; SGLang with --enable-metrics, which the inference
    role passes); its GPUs' DCGM exporter."""
    labels = {HOST_LABEL: host}
    found: dict[str, list[dict[str, Any]]] = {job: [] for job in TARGET_JOBS}
    found["node"] = [{"targets": [host_port(address, settings["monitoring_node_exporter_port"])], "labels": labels}]
    if record and record.get("serves_api", True):
        urls = [urlsplit(slot["url"]) for slot in scaling.serving(record, scale_state)]
        engine_labels = {**labels, "__scheme__": urls[0].scheme or "http"}
        targets = [host_port(url.hostname or "", url.port or 80) for url in urls]
        found["engine"] = [{"targets": targets, "labels": engine_labels}]
    if gpu_exporter:
        found["gpu"] = [{"targets": [host_port(address, settings["monitoring_dcgm_exporter_port"])], "labels": labels}]
    return found


def _duration(seconds: float) -> str:
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{int(seconds * 1000)}ms"


def prometheus_config(settings: dict[str, Any], server_addresses: dict[str, str], servers: list[str]) -> dict[str, Any]:
    """Prometheus's configuration: every host's node_exporter, engine and GPU exporter from the files each host
    registers (:func:`host_targets`), each monitoring server's Prometheus and Alertmanager; alerts go to every
    Alertmanager (they deduplicate among themselves). ``server_addresses`` maps each server to its listen address."""
    interval = float(settings["monitoring_scrape_interval_seconds"])
    # Half the interval, at most Prometheus's default 10 s: an exporter on the LAN answers in milliseconds, and a host
    # gone silent counts as down within two intervals, not three. The same for a push to an Alertmanager: Prometheus
    # sends each batch to every Alertmanager and waits for all before the next, so one that went down with its host
    # delays the others' alerts by this much, not by the default 10 s.
    timeout = _duration(min(interval / 2, 10.0))

    def static(port_setting: str) -> list[dict[str, Any]]:
        return [
            {"targets": [host_port(server_addresses[h], settings[port_setting])], "labels": {HOST_LABEL: h}}
            for h in servers
        ]

    scrape_configs: list[dict[str, Any]] = [
        {"job_name": "prometheus", "static_configs": static("monitoring_prometheus_port")},
        {"job_name": "alertmanager", "static_configs": static("monitoring_alertmanager_port")},
    ]
    for job in TARGET_JOBS:
        scrape_configs.append(
            {
                "job_name": job,
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [f"{TARGETS_DIR}/{job}/*.yml"], "refresh_interval": "1m"}],
            }
        )
    return {
        "global": {
            "scrape_interval": _duration(interval),
            "scrape_timeout": timeout,
            "evaluation_interval": _duration(float(settings["monitoring_evaluation_interval_seconds"])),
        },
        "rule_files": list(RULE_FILES),
        "alerting": {
            "alertmanagers": [
                {
                    "timeout": timeout,
                    "static_configs": [
                        {
                            "targets": [
                                host_port(server_addresses[h], settings["monitoring_alertmanager_port"])
                                for h in servers
                            ]
                        }
                    ],
                }
            ]
        },
        "scrape_configs": scrape_configs,
    }


def retention_size(filesystem_bytes: int | str, fraction: float) -> str:
    """Prometheus's ``--storage.tsdb.retention.size`` for a TSDB on a filesystem of ``filesystem_bytes``: ``fraction``
    of it, in whole MiB (Prometheus's units are base 2), never under 512 MiB. "" when the size is unknown."""
    try:
        total = int(str(filesystem_bytes).strip())
    except ValueError:
        return ""
    if total <= 0:
        return ""
    size = max(MIN_RETENTION_BYTES, int(total * float(fraction)))
    return f"{math.floor(size / 1024**2)}MB"


def problems(settings: dict[str, Any], addresses: dict[str, str], servers: list[str]) -> list[str]:
    """What is wrong with the monitoring settings, each naming the variable and the fix ([] when nothing)."""
    found = []
    interval = settings["monitoring_scrape_interval_seconds"]
    evaluation = settings["monitoring_evaluation_interval_seconds"]
    if not 1 <= float(interval) <= 300:
        found.append(f"monitoring_scrape_interval_seconds is {interval}: give 1 to 300 (the design's cadence is 30)")
    if not 1 <= float(evaluation) <= float(interval):
        found.append(
            f"monitoring_evaluation_interval_seconds is {evaluation}: give 1 to the scrape interval ({interval}), "
            "so that an alert sees every scrape"
        )
    fraction = float(settings["monitoring_prometheus_retention_fraction"])
    if not FRACTION_RANGE[0] <= fraction <= FRACTION_RANGE[1]:
        found.append(
            f"monitoring_prometheus_retention_fraction is {fraction}: give {FRACTION_RANGE[0]} to "
            f"{FRACTION_RANGE[1]} of the filesystem under {settings['monitoring_prometheus_data_dir']}"
        )
    for host in sorted(addresses):
        address = addresses[host]
        if not address:
            found.append(
                f"{host} has no address for its exporters: set monitoring_address (or mgmt_network_address) for it"
            )
            continue
        try:
            ipaddress.ip_address(address)
        except ValueError:
            found.append(f"{host}: monitoring_address {address!r} is not an IP address (give one without a prefix)")
    for key in ("monitoring_scale_out_kv_cache_ratio", "monitoring_scale_in_kv_cache_ratio"):
        if not 0 < float(settings[key]) <= 1:
            found.append(f"{key} is {settings[key]}: give a share of the KV cache, above 0 and at most 1")
    if float(settings["monitoring_scale_in_kv_cache_ratio"]) >= float(settings["monitoring_scale_out_kv_cache_ratio"]):
        found.append(
            f"monitoring_scale_in_kv_cache_ratio ({settings['monitoring_scale_in_kv_cache_ratio']}) must be below "
            f"monitoring_scale_out_kv_cache_ratio ({settings['monitoring_scale_out_kv_cache_ratio']}), or an engine "
            "started for the load would be stopped under it"
        )
    for key in ("monitoring_scale_out_after_seconds", "monitoring_scale_in_after_seconds"):
        if float(settings[key]) < float(interval):
            found.append(
                f"{key} is {settings[key]}: give at least the scrape interval ({interval} s), so that one scrape "
                "does not scale"
            )
    url = str(settings.get("monitoring_scaler_url") or "")
    if url and urlsplit(url).scheme not in ("http", "https"):
        found.append(f"monitoring_scaler_url {url!r}: give ironserve scaler's http(s) URL, or leave it empty")
    if url and str(settings.get("monitoring_scaler_token_given")).lower() not in ("true", "1"):
        found.append(
            "monitoring_scaler_url is set without monitoring_scaler_token: whoever reaches the scaler could start "
            "and stop engines; set a vaulted token (ironserve scaler reads the same one with --token-file)"
        )
    ports = {key: value for key, value in settings.items() if key.endswith("_port")}
    for key, value in sorted(ports.items()):
        if not 1 <= int(value) <= 65535:
            found.append(f"{key} is {value}: give a TCP port, 1 to 65535")
    seen: dict[int, str] = {}
    for key, value in sorted(ports.items()):
        if int(value) in seen:
            found.append(f"{key} and {seen[int(value)]} are both {value}: give each listener its own port")
        seen.setdefault(int(value), key)
    return found


# Expressions the alerts and `ironserve status` share (one home each).
RAID_MISSING_MEMBERS = 'node_md_disks_required - ignoring(state) node_md_disks{state="active"} > 0'
# The monitoring role's own textfile (files/ironserve-rdma-state.sh): node_exporter 1.9.0's infiniband collector
# reports nothing on a host with a device without counters (soft-RoCE, Broadcom's RoCE NICs).
RDMA_PORT_STATE = "ironserve_rdma_port_state_id"
RDMA_PORT_NOT_ACTIVE = f"{RDMA_PORT_STATE} != 4"  # 4: ACTIVE
# Filesystems whose free space is not a disk's (a container's overlay, images, kernel namespaces).
NOT_DISKS = "overlay|squashfs|ramfs|nsfs"


# --- Rules -----------------------------------------------------------------------------------------------------------
# vLLM 0.11.0 and SGLang 0.5.3 name the same things differently; the recording rules give each one name, per host,
# and every alert and dashboard reads only those (docs/notes/monitoring-facts.md has the sources).
ENGINE_METRICS = {
    "requests_running": ("vllm:num_requests_running", "sglang:num_running_reqs"),
    "requests_waiting": ("vllm:num_requests_waiting", "sglang:num_queue_reqs"),
    "kv_cache_usage_ratio": ("vllm:kv_cache_usage_perc", "sglang:token_usage"),
    "generation_tokens": ("vllm:generation_tokens_total", "sglang:generation_tokens_total"),
    "prompt_tokens": ("vllm:prompt_tokens_total", "sglang:prompt_tokens_total"),
    "requests_finished": ("vllm:request_success_total", "sglang:num_requests_total"),
    "requests_aborted": ('vllm:request_success_total{finished_reason="abort"}', "sglang:num_aborted_requests_total"),
    "time_to_first_token_seconds": ("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds"),
    "e2e_latency_seconds": ("vllm:e2e_request_latency_seconds", "sglang:e2e_request_latency_seconds"),
    "inter_token_latency_seconds": ("vllm:inter_token_latency_seconds", "sglang:inter_token_latency_seconds"),
}
WINDOW = "5m"


def _either(template: str, names: tuple[str, ...]) -> str:
    return " or ".join(template.format(metric=name) for name in names)


def _rule_groups(**groups: list[dict[str, Any]]) -> dict[str, Any]:
    """A Prometheus rule file: one group per keyword, named ironserve-<keyword>, in the order given."""
    return {"groups": [{"name": f"ironserve-{name}", "rules": rules} for name, rules in groups.items()]}


def recording_rules() -> dict[str, Any]:
    """The five dimensions as recording rules (Prometheus rule-file format), each named ``ironserve:<what>``."""
    by = f"by ({HOST_LABEL})"
    engine = []
    for name in ("requests_running", "requests_waiting"):
        engine.append(
            {"record": f"ironserve:engine_{name}", "expr": _either(f"sum {by} ({{metric}})", ENGINE_METRICS[name])}
        )
    engine.append(
        {
            "record": "ironserve:engine_kv_cache_usage_ratio",
            "expr": _either(f"max {by} ({{metric}})", ENGINE_METRICS["kv_cache_usage_ratio"]),
        }
    )
    for name in ("generation_tokens", "prompt_tokens", "requests_finished", "requests_aborted"):
        engine.append(
            {
                "record": f"ironserve:engine_{name}:rate{WINDOW}",
                "expr": _either(f"sum {by} (rate({{metric}}[{WINDOW}]))", ENGINE_METRICS[name]),
            }
        )
    for name in ("time_to_first_token_seconds", "e2e_latency_seconds", "inter_token_latency_seconds"):
        buckets = tuple(metric + "_bucket" for metric in ENGINE_METRICS[name])
        engine.append(
            {
                "record": f"ironserve:engine_{name}:p99_{WINDOW}",
                "expr": "histogram_quantile(0.99, "
                + _either(f"sum by ({HOST_LABEL}, le) (rate({{metric}}[{WINDOW}]))", buckets)
                + ")",
            }
        )
    engine.append(
        {
            # Performance's steadiness: how much the token rate varies over an hour, relative to its mean.
            "record": "ironserve:engine_generation_tokens:variation_1h",
            "expr": f"stddev_over_time(ironserve:engine_generation_tokens:rate{WINDOW}[1h]) "
            f"/ avg_over_time(ironserve:engine_generation_tokens:rate{WINDOW}[1h])",
        }
    )
    business = [
        {
            "record": f"ironserve:engine_request_success_ratio:rate{WINDOW}",
            "expr": f"1 - ironserve:engine_requests_aborted:rate{WINDOW} "
            f"/ (ironserve:engine_requests_finished:rate{WINDOW} > 0)",
        },
        {"record": "ironserve:service_queue_length", "expr": "sum(ironserve:engine_requests_waiting)"},
    ]
    resources = [
        {
            "record": "ironserve:gpu_memory_used_ratio",
            # Used over the whole framebuffer: used, free and what the driver reserves.
            "expr": f"sum {by} (DCGM_FI_DEV_FB_USED) "
            f"/ sum {by} (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE + DCGM_FI_DEV_FB_RESERVED)",
        },
        {"record": "ironserve:gpu_utilisation_ratio", "expr": f"avg {by} (DCGM_FI_DEV_GPU_UTIL) / 100"},
        {
            "record": f"ironserve:gpu_nvlink_bandwidth:rate{WINDOW}",
            "expr": f"sum {by} (rate(DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL[{WINDOW}]))",
        },
    ]
    cost = [
        # DCGM counts energy in millijoules since boot: its rate over 1000 is the GPUs' power in watts.
        {
            "record": f"ironserve:gpu_power_watts:rate{WINDOW}",
            "expr": f"sum {by} (rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[{WINDOW}])) / 1000",
        },
        {
            "record": f"ironserve:joules_per_generated_token:rate{WINDOW}",
            # No tokens (idle GPUs): no value, not +Inf.
            "expr": f"ironserve:gpu_power_watts:rate{WINDOW} / (ironserve:engine_generation_tokens:rate{WINDOW} > 0)",
        },
        {
            # GPUs times one hour, over the thousands of requests the last hour finished.
            "record": "ironserve:gpu_hours_per_thousand_requests:1h",
            "expr": f"count {by} (DCGM_FI_DEV_GPU_TEMP) "
            f"/ (avg_over_time(ironserve:engine_requests_finished:rate{WINDOW}[1h]) * 3600 / 1000 > 0)",
        },
    ]
    quality = [
        {"record": "ironserve:canary_answer_matches", "expr": f"max {by} (ironserve_canary_answer_matches)"},
    ]
    return _rule_groups(performance=engine, business=business, resources=resources, cost=cost, quality=quality)


RUNBOOK = "docs/monitoring.md#"


def _alert(
    name: str, expr: str, severity: str, summary: str, action: str, hold: str = "0s", **labels: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": hold,
        "labels": {"severity": severity, **labels},
        "annotations": {"summary": summary, "runbook": action, "runbook_section": RUNBOOK + name.lower()},
    }


def alert_rules(settings: dict[str, Any]) -> dict[str, Any]:
    """Every alert, with its runbook text. Faults (a target gone, a failed disk, a GPU error) fire on the first
    evaluation that sees them, so they reach Alertmanager within two scrape intervals; trends (a queue, latency)
    hold for a while first. ``settings`` are the role's thresholds (monitoring_* variables)."""
    interval = float(settings["monitoring_scrape_interval_seconds"])
    trend = _duration(max(300.0, 10 * interval))
    xids = [int(x) for x in settings["monitoring_critical_xids"]]
    # Three of the canary's intervals without a run.
    canary_stale = 3 * 60 * max(1, int(settings["monitoring_canary_interval_minutes"]))
    h = "{{ $labels.host }}"
    gpu = "GPU {{ $labels.gpu }} on {{ $labels.host }}"
    value = "{{ $value | humanize }}"
    targets = [
        _alert(
            "EngineDown",
            'up{job="engine",host!=""} == 0',
            "critical",
            f"The engine on {h} does not answer Prometheus",
            "The front door has stopped sending it requests. On the host: systemctl status ironserve-inference; "
            "journalctl -u ironserve-inference; docker compose -p ironserve-inference ps. A lasting failure on the "
            "standby leaves the service without failover.",
        ),
        _alert(
            "HostExporterDown",
            # Only targets this role registered (they carry the host): never one of another configuration's.
            'up{job="node",host!=""} == 0',
            "critical",
            f"{h} does not answer Prometheus (node_exporter)",
            "The host is down, cut from the management network, or its prometheus-node-exporter stopped. Check "
            "its console and the switch port; systemctl status prometheus-node-exporter.",
        ),
        _alert(
            "GpuExporterDown",
            'up{job="gpu",host!=""} == 0',
            "critical",
            f"The GPU exporter on {h} does not answer: GPU faults there go unseen",
            "Check the dcgm-exporter container and nvidia-smi on the host.",
        ),
    ]
    gpus = [
        _alert(
            "GpuXidCritical",
            # Counted per Xid over the exporter's window (5 minutes): a later harmless Xid does not hide a critical
            # one, a repeat counts, and the alert clears a window after the last (the last-Xid gauge does none of it).
            f'DCGM_EXP_XID_ERRORS_COUNT{{xid=~"{"|".join(str(x) for x in xids)}"}} > 0',
            "critical",
            f"{gpu} reported Xid {{{{ $labels.xid }}}} ({value} in 5 minutes)",
            "An Xid in NVIDIA's list of errors that need a GPU reset, a reboot or a service call. Drain the host "
            "(stop its engine: the front door fails over), read dmesg for the Xid's detail, then follow NVIDIA's "
            "Xid catalog for that number. It clears five minutes (the exporter's window) after the last such Xid.",
        ),
        _alert(
            "GpuEccDoubleBit",
            f"increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL[{WINDOW}]) > 0",
            "critical",
            f"{gpu} had an uncorrectable (double-bit) ECC error",
            "Results computed on that GPU since the error may be wrong. Drain the host, reset the GPU, and file a "
            "service case if it repeats.",
        ),
        _alert(
            "GpuRowRemapFailed",
            "DCGM_FI_DEV_ROW_REMAP_FAILURE > 0",
            "critical",
            f"{gpu} could not remap a memory row",
            "The GPU's memory has no spare rows left for a failing one: replace the GPU.",
        ),
        _alert(
            "GpuTemperatureHigh",
            f"DCGM_FI_DEV_GPU_TEMP > {int(settings['monitoring_gpu_temperature_alert_celsius'])}",
            "warning",
            f"{gpu} is at {value} C",
            "The GPU throttles its clocks soon. Check the server's fans and the room's cooling.",
            _duration(2 * interval),
        ),
    ]
    storage = [
        _alert(
            "RaidDegraded",
            # A failed, removed or still rebuilding member is not active: the array has less redundancy than built.
            RAID_MISSING_MEMBERS,
            "critical",
            f"RAID array {{{{ $labels.device }}}} on {h} is missing a member",
            "Another failure in the same mirror loses the tier's data. cat /proc/mdstat; mdadm --detail on the "
            "array; replace the disk and add it back (docs/storage.md).",
        ),
        _alert(
            "DiskNearlyFull",
            f'node_filesystem_avail_bytes{{mountpoint=~"{settings["monitoring_disk_mountpoints_regex"]}",'
            f'fstype!~"{NOT_DISKS}"}} / node_filesystem_size_bytes '
            f"< {float(settings['monitoring_disk_free_alert_ratio'])}",
            "warning",
            f"{{{{ $labels.mountpoint }}}} on {h} has {{{{ $value | humanizePercentage }}}} free",
            "Free space before writes fail: old weights revisions (ironserve weights), container images "
            "(docker image prune) or the warm tier's results moved to the cold tier.",
        ),
    ]
    network = [
        _alert(
            "RdmaPortDown",
            RDMA_PORT_NOT_ACTIVE,
            "critical",
            f"RDMA port {{{{ $labels.device }}}}/{{{{ $labels.port }}}} on {h} is not active",
            "Engines spanning nodes lose their collective traffic. Check the data NIC's link (ip link), the "
            "switch port and rdma link show.",
        ),
    ]
    serving = [
        _alert(
            "KvCacheNearlyFull",
            f"ironserve:engine_kv_cache_usage_ratio > {float(settings['monitoring_kv_cache_alert_ratio'])}",
            "warning",
            f"The engine on {h} uses {{{{ $value | humanizePercentage }}}} of its KV cache",
            "Requests queue or are preempted. Add capacity (another replica) or lower the context length.",
            trend,
        ),
        _alert(
            "QueueGrowing",
            f"ironserve:engine_requests_waiting > {int(settings['monitoring_queue_alert_requests'])} "
            f"and deriv(ironserve:engine_requests_waiting[{WINDOW}]) >= 0",
            "warning",
            f"{value} requests wait in the engine's queue on {h}, not shrinking",
            "Load exceeds what the engines serve. Scale out, or shed load at the front door.",
            trend,
        ),
        _alert(
            "LatencyAboveObjective",
            f"ironserve:engine_e2e_latency_seconds:p99_{WINDOW} > {float(settings['monitoring_slo_p99_seconds'])}",
            "warning",
            f"P99 request latency on {h} is {value} s",
            "Above the site's objective (monitoring_slo_p99_seconds). Look at the queue and KV cache alerts first.",
            trend,
        ),
        _alert(
            "FirstTokenAboveObjective",
            f"ironserve:engine_time_to_first_token_seconds:p99_{WINDOW} "
            f"> {float(settings['monitoring_slo_ttft_p99_seconds'])}",
            "warning",
            f"P99 time to first token on {h} is {value} s",
            "Above the site's objective (monitoring_slo_ttft_p99_seconds): long prompts or a full queue.",
            trend,
        ),
        _alert(
            "CanaryNotRunning",
            f"time() - ironserve_canary_last_run_timestamp_seconds > {canary_stale}",
            "warning",
            f"The canary on {h} has not run for {{{{ $value | humanizeDuration }}}}",
            "Its last answer no longer says anything. systemctl status ironserve-canary.timer "
            "ironserve-canary.service; journalctl -u ironserve-canary.",
        ),
        _alert(
            "CanaryDrift",
            "ironserve:canary_answer_matches == 0",
            "critical",
            f"The canary prompt's answer through {h} differs from the one recorded at deployment",
            "At temperature 0 the same model gives the same answer: a different one means different weights, "
            "engine or settings. Compare the weights' manifest and the engine image with the deployment record.",
        ),
    ]
    failover = [
        _alert(
            "FloatingAddressMoved",
            'changes(ironserve_vrrp_state{state="MASTER"}[10m]) > 0',
            "warning",
            f"{h} took or gave up the floating service address in the last 10 minutes",
            "A failover happened. Find why the other node failed (its keepalived journal: journalctl -t "
            "ironserve-vrrp) and bring it back: it rejoins as standby by itself.",
        ),
        _alert(
            "NoFloatingAddressHolder",
            # Also when no node reports at all any more (both down), as long as one did in the last hour.
            '(sum(ironserve_vrrp_state{state="MASTER"}) or vector(0)) == 0 '
            "and on() count(last_over_time(ironserve_vrrp_state[1h])) > 0",
            "critical",
            "No inference host holds the floating service address: clients get no answer",
            "Both nodes' checks fail (engines down or HAProxy down) or keepalived is stopped on both. "
            "systemctl status keepalived haproxy ironserve-inference on each.",
        ),
        _alert(
            "SplitBrain",
            'sum(ironserve_vrrp_state{state="MASTER"}) > 1',
            "critical",
            "More than one host holds the floating service address",
            "The nodes cannot hear each other's VRRP adverts: check the service segment between them and the "
            "split-brain journal (journalctl -u ironserve-split-brain).",
            # Held: a node back from a power cut reports its old state until keepalived writes the new one.
            _duration(2 * interval),
        ),
        _alert(
            "StandbyNotReady",
            # Ready: in BACKUP with its own engine answering (a standby without one would take the address and serve
            # nothing once the master's engine is gone too).
            '(sum(ironserve_vrrp_state{state="BACKUP"} == 1 and on(host) up{job="engine"} == 1) or vector(0)) == 0 '
            'and on() sum(ironserve_vrrp_state{state="MASTER"}) == 1',
            "warning",
            "No standby is ready to take the floating service address",
            "The next failure stops the service. The standby's engine does not answer, its keepalived is in FAULT "
            "(its HAProxy check fails) or the host is down.",
            _duration(2 * interval),
        ),
    ]
    # The backup role's textfile metrics (roles/backup/files/ironserve-backup), one series per host and target.
    target = "{{ $labels.target }}"
    backup = [
        _alert(
            "BackupFailed",
            "ironserve_backup_last_run_success == 0 and ironserve_backup_last_run_timestamp_seconds > 0",
            "warning",
            f"The last backup of {h} to target {target} failed",
            "Nothing newer than the last good snapshot can be restored. journalctl -u ironserve-backup@TARGET (the "
            "alert's target) on the host: an unreachable store, a full bucket, wrong keys or password. Run it again "
            "with systemctl start ironserve-backup@TARGET.",
        ),
        _alert(
            "BackupTooOld",
            # The age limit comes with the metric: each target's own (backup_cold_max_age_hours and the off-site one).
            "time() - ironserve_backup_last_success_timestamp_seconds > ironserve_backup_max_age_seconds",
            "critical",
            f"The newest backup of {h} to target {target} is {{{{ $value | humanizeDuration }}}} old",
            "Older than the site's recovery point: a host lost now loses what changed since. Check the timer "
            "(systemctl list-timers 'ironserve-backup-*') and the last runs (journalctl -u ironserve-backup@TARGET).",
        ),
        _alert(
            "BackupCheckFailed",
            "ironserve_backup_last_check_success == 0",
            "critical",
            f"restic check found the repository of {h} on target {target} damaged",
            "A restore from it is refused. Read the check's output (journalctl -u ironserve-backup-check@TARGET), "
            "repair it (restic repair index, restic repair snapshots) or start a new repository; restore from the "
            "other target meanwhile.",
        ),
    ]
    waiting, kv_cache = "ironserve:engine_requests_waiting", "ironserve:engine_kv_cache_usage_ratio"
    scale = [
        _alert(
            "EngineScaleOut",
            # A slot free: the host's GPUs hold another engine (its node_exporter's textfile, ironserve.scaling).
            f"({waiting} > {int(settings['monitoring_scale_out_queue_requests'])} "
            f"or {kv_cache} > {float(settings['monitoring_scale_out_kv_cache_ratio'])}) "
            "and on(host) max by (host) (ironserve_engine_replica_slots - ironserve_engine_replicas) > 0",
            "info",
            f"Load on {h} asks for another engine, and its GPUs hold one",
            "Scaling (monitoring_scaler_url: ironserve scaler) starts the next engine on the host's free GPUs and "
            "adds it to the front door. Without a scaler: ansible-playbook playbooks/scale.yml -e "
            "ironserve_scale_host=HOST -e ironserve_scale_direction=out.",
            _duration(float(settings["monitoring_scale_out_after_seconds"])),
            **{scaling.ACTION_LABEL: "out"},
        ),
        _alert(
            "EngineScaleIn",
            f"max by (host) (ironserve_engine_replicas) > 1 and on(host) {waiting} == 0 "
            f"and on(host) {kv_cache} < {float(settings['monitoring_scale_in_kv_cache_ratio'])}",
            "info",
            f"{h} runs more engines than its load needs",
            "Held for the cool-down (monitoring_scale_in_after_seconds). Scaling stops the host's last replica "
            "after the front door stopped sending to it; the host's first engine always stays.",
            _duration(float(settings["monitoring_scale_in_after_seconds"])),
            **{scaling.ACTION_LABEL: "in"},
        ),
    ]
    return _rule_groups(
        targets=targets,
        gpu=gpus,
        storage=storage,
        network=network,
        serving=serving,
        failover=failover,
        backup=backup,
        scale=scale,
    )


# --- Dashboards ------------------------------------------------------------------------------------------------------
# The five dimensions as panels, each one series per host: the Prometheus console (served by Prometheus itself, as
# Grafana is not in Debian) and the Grafana dashboard (for a site that runs Grafana) are both made from this list.
PANELS = (
    ("resources", "KV cache used", "ironserve:engine_kv_cache_usage_ratio", "percentunit"),
    ("resources", "GPU memory used", "ironserve:gpu_memory_used_ratio", "percentunit"),
    ("resources", "GPU utilisation", "ironserve:gpu_utilisation_ratio", "percentunit"),
    ("resources", "NVLink traffic", f"ironserve:gpu_nvlink_bandwidth:rate{WINDOW}", "Bps"),
    ("performance", "P99 request latency", f"ironserve:engine_e2e_latency_seconds:p99_{WINDOW}", "s"),
    ("performance", "P99 time to first token", f"ironserve:engine_time_to_first_token_seconds:p99_{WINDOW}", "s"),
    ("performance", "P99 inter-token latency", f"ironserve:engine_inter_token_latency_seconds:p99_{WINDOW}", "s"),
    ("performance", "Generated tokens per second", f"ironserve:engine_generation_tokens:rate{WINDOW}", "short"),
    ("performance", "Token rate variation (1 h)", "ironserve:engine_generation_tokens:variation_1h", "percentunit"),
    ("business", "Request success", f"ironserve:engine_request_success_ratio:rate{WINDOW}", "percentunit"),
    ("business", "Requests queued", "ironserve:engine_requests_waiting", "short"),
    ("business", "Requests running", "ironserve:engine_requests_running", "short"),
    ("quality", "Canary answer as recorded", "ironserve:canary_answer_matches", "bool"),
    ("quality", "Canary latency", f"max by ({HOST_LABEL}) (ironserve_canary_latency_seconds)", "s"),
    ("cost", "GPU power", f"ironserve:gpu_power_watts:rate{WINDOW}", "watt"),
    ("cost", "Joules per generated token", f"ironserve:joules_per_generated_token:rate{WINDOW}", "short"),
    ("cost", "GPU-hours per 1000 requests", "ironserve:gpu_hours_per_thousand_requests:1h", "short"),
)


# How the console shows a value of each panel unit (Prometheus's template functions).
CONSOLE_FORMAT = {
    "percentunit": "humanizePercentage",
    "s": "humanizeDuration",
    "Bps": 'humanize1024 | printf "%sB/s"',
    "watt": 'humanize | printf "%s W"',
    "bool": 'printf "%.0f"',
    "short": "humanize",
}


def _dimensions() -> dict[str, list[tuple[str, str, str]]]:
    """PANELS by dimension, in order: (title, expr, unit) each."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for dimension, title, expr, unit in PANELS:
        found.setdefault(dimension, []).append((title, expr, unit))
    return found


def console_template() -> str:
    """A Prometheus console (Go template, served at /consoles/ironserve.html): per dimension, a table of every host's
    current value of each panel, each value linking to its graph in Prometheus."""
    lines = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>ironserve</title>',
        "<style>body{font-family:sans-serif}td,th{padding:2px 10px;text-align:right}th{background:#eee}</style>",
        "</head><body>",
        "<h1>ironserve: the service in five dimensions</h1>",
        "<p>Each value is the latest of its recording rule (ironserve.monitoring); a dash: no series on that host.</p>",
    ]
    for dimension, panels in _dimensions().items():
        lines.append(f"<h2>{dimension}</h2>")
        lines.append("<table><tr><th>host</th>" + "".join(f"<th>{title}</th>" for title, _, _ in panels) + "</tr>")
        lines.append(f'{{{{ range $node := query `up{{job="node"}}` | sortByLabel "{HOST_LABEL}" }}}}')
        lines.append(f"<tr><td>{{{{ $node.Labels.{HOST_LABEL} }}}}</td>")
        for _, expr, unit in panels:
            scoped = f'({expr}) and on({HOST_LABEL}) up{{job="node",{HOST_LABEL}="%s"}}'
            lines.append(
                f"<td>{{{{ with query (printf `{scoped}` $node.Labels.{HOST_LABEL}) }}}}"
                f'<a href="/graph?g0.expr={{{{ printf `{scoped}` $node.Labels.{HOST_LABEL} | urlquery }}}}">'
                f"{{{{ . | first | value | {CONSOLE_FORMAT[unit]} }}}}</a>{{{{ else }}}}-{{{{ end }}}}</td>"
            )
        lines.append("</tr>{{ end }}</table>")
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"


def grafana_dashboard() -> dict[str, Any]:
    """The same panels as a Grafana dashboard (JSON model, one row per dimension), on a Prometheus data source
    chosen at import or by provisioning."""
    panels: list[dict[str, Any]] = []
    y = 0
    for dimension, charts in _dimensions().items():
        panels.append(
            {"type": "row", "title": dimension, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}}
        )
        y += 1
        for index, (title, expr, unit) in enumerate(charts):
            panels.append(
                {
                    "type": "timeseries",
                    "title": title,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                    "targets": [{"refId": "A", "expr": expr, "legendFormat": f"{{{{{HOST_LABEL}}}}}"}],
                    "gridPos": {"h": 8, "w": 8, "x": (index % 3) * 8, "y": y + (index // 3) * 8},
                }
            )
        y += 8 * ((len(charts) + 2) // 3)
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "title": "ironserve: the service in five dimensions",
        "uid": "ironserve-five-dimensions",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "panels": panels,
    }


def generated_file(kind: str, settings: dict[str, Any]) -> str:
    """A file the role writes from this module: the rule files ("recording", "alerts"; YAML), the console
    ("console", HTML with Prometheus's template language), the Grafana dashboard ("grafana", JSON) or the DCGM
    exporter's counters ("dcgm-counters", CSV). ``settings``: the role's (the alerts' thresholds)."""
    if kind in ("recording", "alerts"):
        rules = recording_rules() if kind == "recording" else alert_rules(settings)
        return yaml.safe_dump(rules, sort_keys=False, width=1000)
    if kind == "dcgm-counters":
        return dcgm_counters_csv()
    return console_template() if kind == "console" else json.dumps(grafana_dashboard(), indent=2) + "\n"


# --- NVIDIA's DCGM exporter ------------------------------------------------------------------------------------------
# Its counters file (DCGM field, Prometheus type, help; dcgm-exporter's etc/default-counters.csv format at 4.5.3-4.8.2):
# what the rules and panels read, and beside it what an operator looks at when one fires. The default file leaves the
# ECC counters and clock events out; the alerts need them.
DCGM_COUNTERS = (
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_EXP_XID_ERRORS_COUNT", "counter", "Count of XID errors within the user-specified time window."),
    ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "counter", "Total number of single-bit volatile ECC errors."),
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors."),
    ("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "counter", "Total number of double-bit persistent ECC errors."),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors."),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors."),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed."),
    # Throttling: the exporter adds DCGM_FI_DEV_CLOCKS_EVENT_REASONS itself for this count, per reason.
    ("DCGM_EXP_CLOCK_EVENTS_COUNT", "counter", "Count of clock events within the user-specified time window."),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter", "Total number of NVLink bandwidth counters for all lanes."),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    ("DCGM_FI_DRIVER_VERSION", "label", "Driver Version."),
)
# Where the counters file sits inside the container (mounted read-only from the host).
DCGM_COUNTERS_IN_CONTAINER = "/etc/dcgm-exporter/ironserve-counters.csv"


def dcgm_counters_csv() -> str:
    lines = ["# ironserve's counters for NVIDIA's DCGM exporter (ironserve.monitoring.DCGM_COUNTERS)."]
    lines.append("# DCGM FIELD, Prometheus metric type, help message")
    lines += [f"{field}, {kind}, {text}" for field, kind, text in DCGM_COUNTERS]
    return "\n".join(lines) + "\n"


def dcgm_exporter_argv(image: str, address: str, port: int, counters: str, container: str) -> list[str]:
    """The ``docker run`` of the DCGM exporter (its README's, outside Kubernetes): every GPU, SYS_ADMIN for the
    profiling fields, on the host's network listening only on the monitoring address, with ironserve's counters."""
    return [
        "/usr/bin/docker",
        "run",
        "--rm",
        "--name",
        container,
        "--gpus",
        "all",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "SYS_ADMIN",
        "--network",
        "host",
        "--volume",
        f"{counters}:{DCGM_COUNTERS_IN_CONTAINER}:ro",
        image,
        "--collectors",
        DCGM_COUNTERS_IN_CONTAINER,
        "--address",
        host_port(address, port),
    ]
