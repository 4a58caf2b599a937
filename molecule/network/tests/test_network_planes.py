"""Both network planes on two machines: the management plane applied without cutting SSH (and rolled back by the
host when a change would), chrony and control-traffic QoS; the data plane on VLAN 100 with jumbo frames, soft-RoCE
and NCCL settings; the check stage's jumbo pings and ib_write_bw; a reboot; and refused bad input."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import testinfra
import yaml
from lab_ansible import ansible_module, ansible_playbook, role_playbook
from testinfra.utils.ansible_runner import AnsibleRunner

from ironserve import paths

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
HOST_VARS = {path.stem: yaml.safe_load(path.read_text()) for path in sorted((SCENARIO / "host_vars").glob("*.yml"))}
LAB_VARS = yaml.safe_load((paths.REPO_ROOT / "inventories/lab/group_vars/all.yml").read_text())
VLAN = LAB_VARS["data_network_vlan"]
DATA_IP = {name: f"10.99.0.{v['data_network_host_index']}" for name, v in HOST_VARS.items()}
NETWORK_PLAYBOOK = paths.REPO_ROOT / "playbooks/network.yml"
CHECK_PLAYBOOK = paths.REPO_ROOT / "playbooks/network_check.yml"

testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("all")


def _name(host) -> str:
    return host.backend.get_hostname()


def _nic(host, mac: str) -> str:
    for line in host.check_output("ip -o link show").splitlines():
        if mac in line:
            return line.split(":")[1].strip().split("@")[0]
    raise AssertionError(f"{_name(host)} has no NIC with {mac}")


def _mgmt_nic(host) -> str:
    return _nic(host, HOST_VARS[_name(host)]["mgmt_network_mac"])


def _addresses(host, interface: str) -> list[str]:
    document = json.loads(host.check_output(f"ip -json -4 addr show dev {interface}"))
    return [f"{a['local']}/{a['prefixlen']}" for a in document[0]["addr_info"]] if document else []


def _network_files(host) -> str:
    return host.check_output("cat /etc/systemd/network/10-ironserve-*")


# Management plane


def test_management_nic_keeps_its_address_from_our_file(host):
    nic = _mgmt_nic(host)
    assert _addresses(host, nic) == [LAB_VARS["mgmt_network_address"]]
    status = host.check_output(f"networkctl status {nic} --no-pager")
    assert "/etc/systemd/network/10-ironserve-mgmt.network" in status
    assert not host.file("/var/lib/ironserve/network-guard").exists  # the first apply was confirmed


def test_control_traffic_is_marked_and_served_first(host):
    nic = _mgmt_nic(host)
    rules = host.check_output("nft list table inet ironserve_qos")
    assert "tcp sport @control_ports ip dscp set cs6 meta priority set 1:10" in rules
    # This very SSH session is control traffic: its packets went through the rule and HTB class 1:10.
    counters = [
        int(line.split("packets ")[1].split()[0]) for line in rules.splitlines() if "sport @control_ports ip " in line
    ]
    assert counters, rules
    assert counters[0] > 0, rules
    classes = host.check_output(f"tc -s class show dev {nic}")
    control = classes.split("class htb 1:10 ")[1].split("class htb")[0]
    assert int(control.split("Sent ")[1].split()[2]) > 0, classes
    assert "prio 0" in control
    assert host.service("ironserve-qos").is_enabled


def test_chrony_runs_with_the_declared_time_sources(host):
    assert host.service("chrony").is_running
    conf = host.file("/etc/chrony/chrony.conf").content_string
    declared = HOST_VARS[_name(host)]
    for server in declared.get("mgmt_network_ntp_servers", []):
        assert f"server {server} iburst" in conf
        deadline = time.monotonic() + 120
        while "10.99.0.11" not in host.check_output("chronyc -n sources") or "^?" in host.check_output(
            "chronyc -n sources | grep 10.99.0.11"
        ):
            assert time.monotonic() < deadline, host.check_output("chronyc -n sources")
            time.sleep(5)
    if declared.get("mgmt_network_ntp_local_stratum"):
        assert "local stratum 10 orphan" in conf
        assert "allow 10.99.0.0/24" in conf


# Data plane


def test_data_vlan_has_its_address_and_jumbo_frames_on_every_layer(host):
    nic = _nic(host, HOST_VARS[_name(host)]["data_network_macs"][0])
    vlan = f"data.{VLAN}"
    assert host.interface(nic).exists
    assert int(host.file(f"/sys/class/net/{nic}/mtu").content_string) == 9000
    assert int(host.file(f"/sys/class/net/{vlan}/mtu").content_string) == 9000
    assert f"id {VLAN}" in host.check_output(f"ip -d link show dev {vlan}")
    assert _addresses(host, vlan) == [f"{DATA_IP[_name(host)]}/24"]
    assert _addresses(host, nic) == []


def test_soft_roce_is_active_on_the_data_vlan_and_nccl_points_at_it(host):
    nic = _nic(host, HOST_VARS[_name(host)]["data_network_macs"][0])
    links = host.check_output("rdma link show")
    # rxe sits on the real NIC (the kernel refuses a VLAN); the VLAN's address is in its GID table.
    assert f"link rxe0/1 state ACTIVE physical_state LINK_UP netdev {nic}" in links
    env = dict(
        line.split("=", 1)
        for line in host.file("/etc/ironserve/nccl.env").content_string.splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == f"data.{VLAN}"
    assert env["NCCL_IB_HCA"] == "rxe0:1"
    index = env["NCCL_IB_GID_INDEX"]
    assert host.file(f"/sys/class/infiniband/rxe0/ports/1/gid_attrs/types/{index}").content_string.strip() == "RoCE v2"
    assert (
        host.file(f"/sys/class/infiniband/rxe0/ports/1/gid_attrs/ndevs/{index}").content_string.strip()
        == f"data.{VLAN}"
    )
    gid = host.file(f"/sys/class/infiniband/rxe0/ports/1/gids/{index}").content_string.strip()
    a, b, c, d = (int(x) for x in DATA_IP[_name(host)].split("."))
    assert gid.endswith(f"ffff:{a:02x}{b:02x}:{c:02x}{d:02x}")
    assert host.service("ironserve-soft-roce").is_enabled


RDMA_METRICS = ("ironserve_rdma_port_state_id",)
FAULT_NIC = "rdmafault0"
RDMA_STATE = paths.REPO_ROOT / "roles/monitoring/files/ironserve-rdma-state.sh"
TEXTFILES = "/run/ironserve-test-textfiles"


def test_an_rdma_port_down_fires_the_monitoring_alert_and_up_again_is_quiet(host, tmp_path):
    """Real soft-RoCE ports as the monitoring role reports them (its port state writer, node_exporter's textfile
    collector), judged by its RdmaPortDown (promtool, tests/exporter_rules.py). The fault is a second rxe device on a
    dummy NIC of its own, so that the data plane the other tests use is untouched: down, its port is DOWN and only it
    fires; up, every port is ACTIVE and none does."""
    if _name(host) != sorted(HOST_VARS)[0]:
        pytest.skip("one machine is enough: the rule is the same for both")
    import exporter_rules

    name = _name(host)
    labels = {"host": name, "instance": f"{name}:9100", "job": "node"}
    copy = f"src={RDMA_STATE} dest=/tmp/ironserve-rdma-state mode=0755"
    copied = host.ansible("ansible.builtin.copy", copy, check=False, become=True)
    assert not copied.get("failed"), copied
    write = f"mkdir -p {TEXTFILES} && /tmp/ironserve-rdma-state {TEXTFILES}/ironserve_rdma.prom"
    host.check_output(f"ip link add {FAULT_NIC} type dummy && rdma link add rxefault type rxe netdev {FAULT_NIC}")
    exporter_rules.start_exporter(host, "textfile", flags=(f"--collector.textfile.directory={TEXTFILES}",))
    try:
        host.check_output(write)
        down = exporter_rules.scrape(host, RDMA_METRICS, name)
        assert any('device="rxe0"' in series and value == 4 for series, value in down.items()), down
        exporter_rules.check(tmp_path, down, "RdmaPortDown", [{"device": "rxefault", "port": "1", **labels}])
        host.check_output(f"ip link set {FAULT_NIC} up")
        deadline = time.monotonic() + 30
        while "rxefault/1 state ACTIVE" not in host.check_output("rdma link show"):
            assert time.monotonic() < deadline, host.check_output("rdma link show")
            time.sleep(0.5)
        host.check_output(write)
        exporter_rules.check(tmp_path, exporter_rules.scrape(host, RDMA_METRICS, name), "RdmaPortDown", [])
    finally:
        exporter_rules.stop_exporter(host)
        host.run(f"rdma link delete rxefault; ip link delete {FAULT_NIC}; rm -rf {TEXTFILES} /tmp/ironserve-rdma-state")
    assert "rxefault" not in host.check_output("rdma link show")


def _run_check(tmp_path) -> dict:
    env_dir = tmp_path / "artifacts"
    os.environ["IRONSERVE_ARTIFACTS_DIR"] = str(env_dir)
    try:
        result = ansible_playbook(INVENTORY, CHECK_PLAYBOOK, timeout=900)
    finally:
        del os.environ["IRONSERVE_ARTIFACTS_DIR"]
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "changed=0" in output
    report = json.loads((env_dir / "network/data-plane.json").read_text())
    assert (env_dir / "network/data-plane.md").exists()
    return report


def test_check_stage_proves_jumbo_frames_and_rdma_bandwidth_between_the_pair(tmp_path):
    report = _run_check(tmp_path)
    assert sorted((p["from"], p["to"], p["bytes"], p["ok"]) for p in report["pings"]) == [
        ("net-a", "net-b", 8972, True),
        ("net-b", "net-a", 8972, True),
    ]
    [bandwidth] = report["bandwidth"]
    assert (bandwidth["client"], bandwidth["server"], bandwidth["device"]) == ("net-a", "net-b", "rxe0")
    assert bandwidth["gbits"] > 0
    print(f"\nsoft-RoCE ib_write_bw net-a -> net-b over VLAN {VLAN} (TCG): {bandwidth['gbits']} Gb/s")


# Guarded apply and bad input


def test_a_management_change_is_applied_without_losing_the_session(tmp_path):
    host = testinfra.get_host(f"ansible://net-a?ansible_inventory={INVENTORY}")
    before = _network_files(host)
    playbook = role_playbook(tmp_path, "net-a", "mgmt_network")
    changed = ansible_playbook(INVENTORY, playbook, {"mgmt_network_dns": ["10.0.2.3"]}, timeout=900)
    output = changed.stdout + changed.stderr
    assert changed.returncode == 0, output[-4000:]
    assert "DNS=10.0.2.3" in _network_files(host)
    journal = host.check_output("journalctl -t ironserve-network --no-pager -o cat")
    assert journal.splitlines()[-1] == "confirmed"
    restored = ansible_playbook(INVENTORY, playbook, timeout=900)
    assert restored.returncode == 0, (restored.stdout + restored.stderr)[-4000:]
    assert _network_files(host) == before


def test_a_change_that_cuts_ssh_is_rolled_back_by_the_host(tmp_path):
    target = "net-b"
    host = testinfra.get_host(f"ansible://{target}?ansible_inventory={INVENTORY}")
    before = _network_files(host)
    playbook = role_playbook(tmp_path, target, "mgmt_network")
    moved = ansible_playbook(
        INVENTORY, playbook, {"mgmt_network_address": "10.0.2.16/24", "mgmt_network_rollback_seconds": 45}, timeout=600
    )
    output = moved.stdout + moved.stderr
    assert moved.returncode != 0, output[-4000:]
    assert "Ansible could not confirm the change on net-b" in output
    assert "restores its previous configuration by itself 45 s after the change" in output
    # QEMU forwards SSH to 10.0.2.15 only: the host is unreachable until it rolls back by itself.
    ansible_module(INVENTORY, target, "ansible.builtin.wait_for_connection", "timeout=240", timeout=300)
    assert _addresses(host, _mgmt_nic(host)) == [LAB_VARS["mgmt_network_address"]]
    assert _network_files(host) == before
    journal = host.check_output("journalctl -t ironserve-network --no-pager -o cat")
    assert "rolled back: the change was not confirmed in time" in journal


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {"data_network_subnet": "10.0.2.0/24"},
            "the net-a data network 10.0.2.0/24 overlaps the net-a management network 10.0.2.0/24",
        ),
        ({"data_network_mtu": 9600}, "net-a: data_network_mtu is 9600; use 1280 to 9216"),
        ({"data_network_address": "10.98.0.5/24"}, "net-a: data_network_address 10.98.0.5/24 is outside its subnet"),
        ({"data_network_macs": ["52:54:00:00:00:99"]}, "data_network_macs lists 52:54:00:00:00:99, which no NIC"),
        (
            {"data_network_macs": ["52:54:00:6e:00:01"], "mgmt_network_mac": "52:54:00:6e:00:01"},
            "net-a: data_network_macs lists 52:54:00:6e:00:01, the management NIC",
        ),
    ],
)
def test_bad_input_is_refused_before_any_change(tmp_path, extra_vars, message):
    host = testinfra.get_host(f"ansible://net-a?ansible_inventory={INVENTORY}")
    before = _network_files(host)
    playbook = role_playbook(tmp_path, "net-a", "mgmt_network", "data_network")
    result = ansible_playbook(INVENTORY, playbook, extra_vars, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert message in output
    assert "changed=0" in output
    assert "changed=1" not in output
    assert _network_files(host) == before


# Reboot


def test_after_a_reboot_both_planes_come_back(tmp_path):
    rebooted = ansible_module(
        INVENTORY, "net-b", "ansible.builtin.reboot", "reboot_timeout=600", "--become", timeout=900
    )
    assert rebooted["net-b"].get("rebooted"), rebooted
    host = testinfra.get_host(f"ansible://net-b?ansible_inventory={INVENTORY}")
    assert _addresses(host, f"data.{VLAN}") == [f"{DATA_IP['net-b']}/24"]
    assert int(host.file(f"/sys/class/net/data.{VLAN}/mtu").content_string) == 9000
    assert "tcp sport @control_ports" in host.check_output("nft list table inet ironserve_qos")
    assert "class htb 1:10" in host.check_output(f"tc class show dev {_mgmt_nic(host)}")
    deadline = time.monotonic() + 120
    while "state ACTIVE" not in host.check_output("rdma link show"):
        assert time.monotonic() < deadline, host.check_output("rdma link show; systemctl status ironserve-soft-roce")
        time.sleep(3)
    report = _run_check(tmp_path)
    assert all(p["ok"] for p in report["pings"])
    assert report["bandwidth"][0]["gbits"] > 0
