"""Scaling the engines on their metrics: replica slots, the step one scale action takes, and Alertmanager's webhook
read into actions. One home for these rules: the inference role (slots), the scale playbook (the step), the
monitoring role (its alerts and the host's replica metrics), the front door and Prometheus's targets (the replicas
that serve) and ``ironserve scaler`` (the webhook) read them.

- A **slot** is one engine's share of an inference host: the GPUs the plan gives one engine (its tensor-parallel
  size), a port (inference_port plus the slot's number) and a systemd unit. A host has as many slots as whole sets of
  its GPUs (never more than the GPUs present), at most ``inference_replicas_max``; an engine spanning nodes has one;
  an engine without GPUs (a custom CPU engine, the bench's stand-in) has ``inference_replicas_max`` (at least one).
- Slot 0 is the inference role's engine (``ironserve-inference.service``) and always serves; the others are rendered
  by the role and started or stopped only by the scale playbook (``ironserve-inference-replica@N.service``).
- How many slots serve is the host's **scale state** (``scale.json`` beside the inference record): written only by
  the scale playbook, read by every later run, so a converge keeps what scaling did. It also counts every action.
"""

from __future__ import annotations

import time
from typing import Any

from ironserve.engines import health_test, service_url

MAIN_UNIT = "ironserve-inference.service"
REPLICA_UNIT = "ironserve-inference-replica@{slot}.service"
# The alerts that ask for an action (ironserve.monitoring raises them), and the label that says which.
ACTION_LABEL = "scale"
DIRECTIONS = ("out", "in")
# What one action ended as: an engine started or stopped, or nothing because every slot serves (out) or only slot 0
# is left (in).
RESULTS = {"out": ("scaled", "at_limit"), "in": ("scaled", "at_floor")}


class ScaleError(ValueError):
    """A scale request that cannot be acted on; the message says why."""


def slot_count(gpus: int, gpus_per_engine: int, nodes: int, limit: int) -> int:
    """How many engines a host can run side by side (see the module's text)."""
    gpus, gpus_per_engine, nodes, limit = int(gpus), int(gpus_per_engine), int(nodes), int(limit)
    if nodes > 1:
        return 1
    if gpus > 0:
        fit = max(1, gpus // max(1, gpus_per_engine))
        return min(fit, limit) if limit > 0 else fit
    return max(1, limit)


def slots(deploy: dict[str, Any], host: str, port: int, count: int, gpus_per_engine: int) -> list[dict[str, Any]]:
    """Every slot's engine on this host: its number, port, URL, health path and container healthcheck, unit, and the
    GPUs it gets (CDI names: every GPU when the host has one slot, else its own consecutive set). ``deploy``: the
    host's engine deployment (ironserve.engines.deployment)."""
    engine = deploy.get("engine") or "custom"
    found = []
    for slot in range(int(count)):
        slot_port = int(port) + slot
        first = slot * int(gpus_per_engine)
        found.append(
            {
                "slot": slot,
                "port": slot_port,
                "url": service_url(host, slot_port),
                "health": service_url(host, slot_port) + deploy.get("ready_path", "/health"),
                "health_test": deploy["health_test"] if slot == 0 else health_test(engine, host, slot_port),
                "unit": MAIN_UNIT if slot == 0 else REPLICA_UNIT.format(slot=slot),
                "devices": ["nvidia.com/gpu=all"]
                if int(count) == 1
                else [f"nvidia.com/gpu={gpu}" for gpu in range(first, first + int(gpus_per_engine))],
            }
        )
    return found


def record_slots(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The slots an inference record lists; a record without (written before scaling existed, or by a site's own
    tooling) has its one engine."""
    if record.get("replica_slots"):
        return list(record["replica_slots"])
    return [{"slot": 0, "url": record["url"], "health": record.get("health") or record["url"], "unit": MAIN_UNIT}]


def serving(record: dict[str, Any], state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The slots that serve: the first as many as the scale state says (slot 0 alone without one), never more than
    the record has (a host re-planned with fewer GPUs keeps what fits)."""
    every = record_slots(record)
    wanted = int((state or {}).get("replicas", 1))
    return every[: max(1, min(wanted, len(every)))]


def step(record: dict[str, Any], state: dict[str, Any] | None, direction: str, now: float | None = None) -> dict:
    """One scale action on a host: the new scale state (replicas, the action counted, when), the units to start
    (out) or stop (in), and what it ended as (RESULTS). Never more engines than slots, never fewer than one."""
    if direction not in DIRECTIONS:
        raise ScaleError(f"scale direction {direction!r}: use one of {', '.join(DIRECTIONS)}")
    every = record_slots(record)
    before = len(serving(record, state))
    after = min(before + 1, len(every)) if direction == "out" else max(before - 1, 1)
    result = RESULTS[direction][0] if after != before else RESULTS[direction][1]
    actions = dict((state or {}).get("actions", {}))
    key = f"{direction}_{result}"
    actions[key] = int(actions.get(key, 0)) + 1
    changed = every[before:after] if direction == "out" else every[after:before]
    return {
        "state": {
            "replicas": after,
            "actions": actions,
            "last_action": {"direction": direction, "result": result, "at": round(now or time.time(), 3)},
        },
        "before": before,
        "after": after,
        "result": result,
        "start": [slot["unit"] for slot in changed] if direction == "out" else [],
        "stop": [slot["unit"] for slot in changed] if direction == "in" else [],
        "wait_for": [slot["health"] for slot in changed] if direction == "out" else [],
    }


def textfile(record: dict[str, Any], state: dict[str, Any] | None) -> str:
    """node_exporter's textfile metrics of a host's scaling: engines serving, slots, and every action counted (the
    host label comes from the scrape target)."""
    lines = [
        "# HELP ironserve_engine_replicas Engines serving on this host (slot 0 and the replicas scaling started).",
        "# TYPE ironserve_engine_replicas gauge",
        f"ironserve_engine_replicas {len(serving(record, state))}",
        "# HELP ironserve_engine_replica_slots Engines this host's GPUs hold side by side.",
        "# TYPE ironserve_engine_replica_slots gauge",
        f"ironserve_engine_replica_slots {len(record_slots(record))}",
        "# HELP ironserve_scale_actions_total Scale actions on this host by direction and result.",
        "# TYPE ironserve_scale_actions_total counter",
    ]
    actions = (state or {}).get("actions", {})
    for direction in DIRECTIONS:
        for result in RESULTS[direction]:
            count = int(actions.get(f"{direction}_{result}", 0))
            lines.append(f'ironserve_scale_actions_total{{direction="{direction}",result="{result}"}} {count}')
    return "\n".join(lines) + "\n"


def webhook_actions(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """The (host, direction) actions an Alertmanager webhook (version 4) asks for: its firing alerts that carry the
    scale label and a host, each pair once, in the order given."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise ScaleError("not an Alertmanager webhook: no list of alerts")
    found: list[tuple[str, str]] = []
    for alert in payload["alerts"]:
        labels = alert.get("labels", {}) if isinstance(alert, dict) else {}
        direction, host = labels.get(ACTION_LABEL), labels.get("host")
        if alert.get("status") == "firing" and direction in DIRECTIONS and host and (host, direction) not in found:
            found.append((host, direction))
    return found
