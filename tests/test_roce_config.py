"""The RoCEv2 settings program for mlx5 ports: reads every setting, reports what differs, changes only that."""

from __future__ import annotations

import os
import subprocess

import jinja2
import pytest

from ironserve import paths

TEMPLATE = paths.REPO_ROOT / "roles/data_network/templates/ironserve-roce-config.sh.j2"

FAKE_DCB = r"""#!/bin/sh
# Stands in for iproute2's dcb: state in files under $DCB_STATE, every change logged.
state=$DCB_STATE
object=$1 verb=$2
shift 4  # object verb dev NETDEV
case "$object $verb" in
  "pfc show") echo "prio-pfc $(cat $state/pfc)" ;;
  "pfc set") shift; echo "$*" > $state/pfc; echo "pfc set $*" >> $state/calls ;;
  "apptrust show") echo "order: $(cat $state/trust)" ;;
  "apptrust set") shift; echo "$*" > $state/trust; echo "apptrust set $*" >> $state/calls ;;
  "app show") echo "dscp-prio $(cat $state/app)" ;;
  "app add") shift; echo "$(cat $state/app) $*" > $state/app; echo "app add $*" >> $state/calls ;;
esac
"""


@pytest.fixture
def port(tmp_path) -> dict:
    """A ConnectX port as the kernel shows it out of the box: no PFC, PCP trust, ECN off, CM ToS unset."""
    script = tmp_path / "ironserve-roce-config"
    text = jinja2.Template(TEMPLATE.read_text()).render(
        ansible_managed="test", data_network_roce_priority=3, data_network_roce_dscp=26
    )
    script.write_text(text)
    script.chmod(0o755)
    bin_dir, state = tmp_path / "bin", tmp_path / "dcb"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "dcb").write_text(FAKE_DCB)
    (bin_dir / "dcb").chmod(0o755)
    (state / "pfc").write_text("0:off 1:off 2:off 3:off 4:off 5:off 6:off 7:off\n")
    (state / "trust").write_text("pcp\n")
    (state / "app").write_text("\n")
    sysfs = tmp_path / "sys"
    for side in ("roce_np", "roce_rp"):
        enable = sysfs / f"class/net/ens1f0np0/ecn/{side}/enable"
        enable.mkdir(parents=True)
        for prio in range(8):
            (enable / str(prio)).write_text("0\n")
    configfs = tmp_path / "config"
    (configfs / "rdma_cm/mlx5_0/ports/1").mkdir(parents=True)  # as configfs shows it after mkdir rdma_cm/mlx5_0
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DCB_STATE": str(state),
        "IRONSERVE_SYSFS": str(sysfs),
        "IRONSERVE_CONFIGFS": str(configfs),
    }

    def run(mode: str) -> str:
        result = subprocess.run(
            [str(script), mode, "ens1f0np0", "mlx5_0"], capture_output=True, text=True, env=env, check=True
        )
        return result.stdout

    return {"run": run, "state": state, "sysfs": sysfs, "configfs": configfs}


def test_check_reports_every_difference_and_changes_nothing(port):
    assert port["run"]("check").splitlines() == [
        "ens1f0np0/mlx5_0: PFC 0:off 1:off 2:off 3:off 4:off 5:off 6:off 7:off -> 0:off 1:off 2:off 3:on 4:off "
        "5:off 6:off 7:off",
        "ens1f0np0/mlx5_0: trust pcp -> dscp",
        "ens1f0np0/mlx5_0: DSCP 26 not mapped to priority 3",
        "ens1f0np0/mlx5_0: RDMA CM ToS unset -> 106",
        "ens1f0np0/mlx5_0: ECN roce_np off on priority 3 -> on",
        "ens1f0np0/mlx5_0: ECN roce_rp off on priority 3 -> on",
    ]
    assert not (port["state"] / "calls").exists()
    assert not (port["configfs"] / "rdma_cm/mlx5_0/ports/1/default_roce_tos").exists()


def test_apply_sets_only_what_differs_and_then_nothing_is_left(port):
    (port["state"] / "trust").write_text("dscp\n")  # already trusted by an earlier tool
    port["run"]("apply")
    assert (port["state"] / "calls").read_text().splitlines() == [
        "pfc set 0:off 1:off 2:off 3:on 4:off 5:off 6:off 7:off",
        "app add 26:3",
    ]
    assert (port["configfs"] / "rdma_cm/mlx5_0/ports/1/default_roce_tos").read_text() == "106\n"
    ecn = port["sysfs"] / "class/net/ens1f0np0/ecn"
    assert [(ecn / side / "enable/3").read_text() for side in ("roce_np", "roce_rp")] == ["1\n", "1\n"]
    assert (ecn / "roce_np/enable/2").read_text() == "0\n"
    assert port["run"]("check") == ""
