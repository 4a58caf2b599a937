"""Planning ``ironserve restore``: a host rebuilt from bare disks and its backups, as one run of ironserve run's kind.

The run is three parts, each a stage of the run record: ``playbooks/restore.yml`` (refuse a host that still serves, a
damaged repository or a snapshot older than the site's limit, before any change; then the host's secrets and site
state back in place), the site's stages (which keep what was restored: a secret is generated only where none exists),
and ``playbooks/restore_finish.yml`` (Prometheus's history back, the weights compared with the snapshot's manifests).
The stages run on every host, not only the restored one: the pair's shared secrets, the front door's backends and the
monitoring targets span hosts, and the others report no change.
"""

from __future__ import annotations

import re
from pathlib import Path

from ironserve import paths, run
from ironserve.stages import Stage

RESTORE_PLAYBOOK = paths.REPO_ROOT / "playbooks" / "restore.yml"
FINISH_PLAYBOOK = paths.REPO_ROOT / "playbooks" / "restore_finish.yml"
# The backup role's targets (roles/backup/tasks/targets.yml).
TARGETS = ("cold", "offsite")
_SNAPSHOT = re.compile(r"^([0-9a-f]{8,64}|latest)$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def plan(
    site: Path,
    inventory: Path | None,
    host: str,
    snapshot: str = "latest",
    target: str = "cold",
    force: bool = False,
    accept_old: bool = False,
    stage_names: str | None = None,
) -> run.RunPlan:
    """The restore of ``host`` as a run plan; RunInputError (or StageError) for input that cannot work."""
    if not _HOST.match(host or ""):
        raise run.RunInputError(f"--host '{host}' is not an inventory host name: name the host to restore")
    if not _SNAPSHOT.match(snapshot):
        raise run.RunInputError(
            f"--snapshot '{snapshot}' is not a snapshot id: give one as restic snapshots shows it (8-64 hex digits) "
            "or latest"
        )
    if target not in TARGETS:
        raise run.RunInputError(f"--target '{target}' is not a backup target: one of {', '.join(TARGETS)}")
    planned = run.plan(site, inventory, stage_names)
    planned.stages = [
        (Stage("restore", RESTORE_PLAYBOOK), None),
        *planned.stages,
        (Stage("restore_finish", FINISH_PLAYBOOK), None),
    ]
    planned.record.extravars = {
        "restore_host": host,
        "restore_snapshot": snapshot,
        "restore_target": target,
        "restore_force": force,
        "restore_accept_old": accept_old,
    }
    return planned
