"""The helper the storage and network scenarios judge node_exporter's live view with (tests/exporter_rules.py): it
passes when the alert fires with exactly the expected labels, and fails when it does not, so that those scenarios'
checks can fail."""

from __future__ import annotations

import pytest
from exporter_rules import check

LABELS = {"host": "h", "instance": "h:9100", "job": "node"}
EXTRA = 'host="h",instance="h:9100",job="node"'
DEGRADED = {
    f'node_md_disks_required{{device="md127",{EXTRA}}}': 4,
    f'node_md_disks{{device="md127",state="active",{EXTRA}}}': 3,
    f'node_md_disks{{device="md127",state="failed",{EXTRA}}}': 1,
}


def test_a_degraded_array_fires_and_a_whole_one_does_not(tmp_path):
    check(tmp_path, DEGRADED, "RaidDegraded", [{"device": "md127", **LABELS}])
    whole = {**DEGRADED, f'node_md_disks{{device="md127",state="active",{EXTRA}}}': 4}
    check(tmp_path, whole, "RaidDegraded", [])


def test_a_check_that_does_not_match_fails(tmp_path):
    down = {f'ironserve_rdma_port_state_id{{device="rxe1",port="1",{EXTRA}}}': 1}
    check(tmp_path, down, "RdmaPortDown", [{"device": "rxe1", "port": "1", **LABELS}])
    with pytest.raises(AssertionError, match="RdmaPortDown"):
        check(tmp_path, down, "RdmaPortDown", [])
