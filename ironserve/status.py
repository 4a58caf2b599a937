"""``ironserve status``: the service's health as Prometheus sees it, one row per host, the alerts firing, and who holds
the floating address. Read-only: it asks a monitoring server's Prometheus (its HTTP API) and nothing else.

The indicators are the design's health checks, read from the monitoring role's recording rules and exporters
(ironserve.monitoring names them): a column whose series a site does not have (no GPU exporter, no canary) shows "-".
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from ironserve.engines import service_url
from ironserve.monitoring import (
    HOST_LABEL,
    NOT_DISKS,
    RAID_MISSING_MEMBERS,
    RDMA_PORT_NOT_ACTIVE,
    RDMA_PORT_STATE,
    WINDOW,
)


@dataclass(frozen=True)
class Indicator:
    column: str
    query: str
    kind: str  # up, state, count, ratio, number, seconds, match


INDICATORS = (
    Indicator("node", 'up{job="node"}', "up"),
    Indicator("engine", 'up{job="engine"}', "up"),
    Indicator("vrrp", "ironserve_vrrp_state == 1", "state"),
    Indicator("running", "ironserve:engine_requests_running", "number"),
    Indicator("queue", "ironserve:engine_requests_waiting", "number"),
    Indicator("kv cache", "ironserve:engine_kv_cache_usage_ratio", "ratio"),
    Indicator("tokens/s", f"ironserve:engine_generation_tokens:rate{WINDOW}", "number"),
    Indicator("p99", f"ironserve:engine_e2e_latency_seconds:p99_{WINDOW}", "seconds"),
    Indicator("ttft p99", f"ironserve:engine_time_to_first_token_seconds:p99_{WINDOW}", "seconds"),
    Indicator("success", f"ironserve:engine_request_success_ratio:rate{WINDOW}", "ratio"),
    Indicator("gpus", f"count by ({HOST_LABEL}) (DCGM_FI_DEV_GPU_TEMP)", "count"),
    Indicator("gpu mem", "ironserve:gpu_memory_used_ratio", "ratio"),
    Indicator("gpu temp", f"max by ({HOST_LABEL}) (DCGM_FI_DEV_GPU_TEMP)", "number"),
    Indicator(
        "raid",
        f"count by ({HOST_LABEL}) ({RAID_MISSING_MEMBERS}) or count by ({HOST_LABEL}) (node_md_disks_required) * 0",
        "count",
    ),
    Indicator(
        "rdma down",
        f"count by ({HOST_LABEL}) ({RDMA_PORT_NOT_ACTIVE}) or count by ({HOST_LABEL}) ({RDMA_PORT_STATE}) * 0",
        "count",
    ),
    Indicator(
        "disk free",
        f'min by ({HOST_LABEL}) (node_filesystem_avail_bytes{{fstype!~"tmpfs|{NOT_DISKS}"}} '
        "/ node_filesystem_size_bytes)",
        "ratio",
    ),
    Indicator("canary", "ironserve:canary_answer_matches", "match"),
)


class StatusError(RuntimeError):
    """Prometheus could not be asked; the message says where and why."""


class InventoryError(StatusError):
    """The inventory does not parse (bad input, where the other StatusErrors are the environment's)."""


def prometheus_of(inventory: str) -> str:
    """The first monitoring server's Prometheus URL, from the inventory as Ansible reads it."""
    from ironserve.doctor import InventoryReadError, read_inventory

    try:
        return prometheus_from_inventory(read_inventory(inventory))
    except InventoryReadError as exc:
        raise InventoryError(str(exc)) from exc


def _get(base: str, path: str, params: dict[str, str] | None = None, timeout: float = 10.0) -> Any:
    url = base.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (the site's Prometheus)
            answer = json.loads(response.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise StatusError(f"cannot read {url}: {exc}") from exc
    if answer.get("status") != "success":
        raise StatusError(f"{url}: {answer.get('error', answer)}")
    return answer["data"]


def _value(kind: str, sample: dict) -> Any:
    raw = sample["value"][1]
    if kind == "up":
        return "up" if float(raw) == 1 else "DOWN"
    if kind == "state":
        return sample["metric"].get("state", "?")
    if kind == "match":
        return "same" if float(raw) == 1 else "DRIFT"
    if kind == "count":
        return int(float(raw))
    number = float(raw)
    # A quantile over a window without requests is NaN: nothing to show (and JSON has no NaN).
    return None if math.isnan(number) else number


def collect(base: str) -> dict[str, Any]:
    """Every indicator per host, the alerts firing, and the floating address's holders."""
    hosts: dict[str, dict[str, Any]] = {}
    for indicator in INDICATORS:
        for sample in _get(base, "/api/v1/query", {"query": indicator.query})["result"]:
            host = sample["metric"].get(HOST_LABEL)
            if host:
                hosts.setdefault(host, {})[indicator.column] = _value(indicator.kind, sample)
    alerts = [
        {
            "alert": alert["labels"].get("alertname", ""),
            "severity": alert["labels"].get("severity", ""),
            "host": alert["labels"].get(HOST_LABEL, ""),
            "summary": alert.get("annotations", {}).get("summary", ""),
            "since": alert.get("activeAt", ""),
        }
        for alert in _get(base, "/api/v1/alerts")["alerts"]
        if alert.get("state") == "firing"
    ]
    alerts.sort(key=lambda a: (a["severity"] != "critical", a["alert"], a["host"]))
    return {
        "prometheus": base,
        "hosts": dict(sorted(hosts.items())),
        "floating_address_holders": sorted(h for h, row in hosts.items() if row.get("vrrp") == "MASTER"),
        "alerts": alerts,
        "critical": any(a["severity"] == "critical" for a in alerts),
    }


def _cell(kind: str, value: Any) -> str:
    if value is None:
        return "-"
    if kind == "ratio":
        return f"{value:.0%}"
    if kind == "seconds":
        return f"{value:.2f}s"
    if kind == "number":
        return f"{value:g}" if value == int(value) else f"{value:.1f}"
    return str(value)


def table(status: dict[str, Any]) -> str:
    """The status as text: the hosts' table, who holds the address, the alerts firing."""
    header = ["host", *(i.column for i in INDICATORS)]
    rows = [header]
    for host, row in status["hosts"].items():
        rows.append([host, *(_cell(i.kind, row.get(i.column)) for i in INDICATORS)])
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    holders = status["floating_address_holders"]
    lines.append("")
    lines.append(f"floating address held by: {', '.join(holders) if holders else 'nobody'}")
    if status["alerts"]:
        lines.append(f"alerts firing ({len(status['alerts'])}):")
        lines += [
            f"  {a['severity'].upper():8} {a['alert']}{' on ' + a['host'] if a['host'] else ''}: {a['summary']}"
            for a in status["alerts"]
        ]
    else:
        lines.append("alerts firing: none")
    return "\n".join(lines) + "\n"


def prometheus_from_inventory(inventory: dict[str, Any]) -> str:
    """The first monitoring server's Prometheus URL, from ``ansible-inventory --list`` output: group
    monitoring_servers (else inference_servers), its monitoring_address (else mgmt_network_address) and port."""
    groups = {name: value for name, value in inventory.items() if name != "_meta"}

    def members(group: str) -> list[str]:
        entry = groups.get(group) or {}
        found = list(entry.get("hosts", []))
        for child in entry.get("children", []):
            found += [h for h in members(child) if h not in found]
        return found

    servers = members("monitoring_servers") or members("inference_servers")
    if not servers:
        raise StatusError("the inventory has no monitoring_servers or inference_servers: give --prometheus URL")
    hostvars = inventory.get("_meta", {}).get("hostvars", {}).get(servers[0], {})
    address = str(hostvars.get("monitoring_address") or hostvars.get("mgmt_network_address") or "").split("/")[0]
    port = str(hostvars.get("monitoring_prometheus_port", 9090))
    if not address or "{" in address or not port.isdigit():
        raise StatusError(
            f"the inventory gives {servers[0]} no literal monitoring_address or mgmt_network_address: "
            "give --prometheus URL"
        )
    return service_url(address, int(port))
