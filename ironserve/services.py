"""Rules about the systemd services the roles run, read from what Ansible's systemd_service module reports."""

from __future__ import annotations

from typing import Any


def ran_before(run_result: Any) -> bool:
    """Whether a unit was already active before the task that runs it (its registered systemd_service result).

    systemd_service reads the unit's status before it acts, so a result whose ActiveState is not "active" is a unit
    that task started: it has read every file written before it, and a handler restarting it again only repeats the
    start (33-49 s for SeaweedFS under TCG, an engine's whole model load for inference). A result without a status (the
    task skipped, or check mode on a unit not yet installed) gives no such proof: the restart stays.
    """
    if not isinstance(run_result, dict):
        return True
    status = run_result.get("status")
    if not isinstance(status, dict):
        return True
    return status.get("ActiveState", "active") == "active"
