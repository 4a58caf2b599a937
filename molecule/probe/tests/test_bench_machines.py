"""The bench's own proof: it boots machines that match their declaration, on networks that reach nothing else,
with the bundle as their only package source. Run on both of the probe scenario's machines (two disk sets).

Expectations come from molecule.yml as it reads at verify time, not from the lab's own record of what
it booted: a declaration changed after create (three NVMe drives instead of two) fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
import yaml
from lab_ansible import ansible_playbook, role_playbook
from lab_machines import disk_mismatches, nic_mismatches, with_extra_nvme
from testinfra.utils.ansible_runner import AnsibleRunner

from ironserve.lab import lab as bench
from ironserve.lab.spec import BUNDLE_GUEST_ADDRESS, MGMT_GUEST_ADDRESS, lab_from_platforms

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
LAB_NAME = "mol-" + os.environ["MOLECULE_SCENARIO_NAME"]
DECLARED = lab_from_platforms(LAB_NAME, yaml.safe_load(Path(os.environ["MOLECULE_FILE"]).read_text())["platforms"])
MACHINES = {m.name: m for m in DECLARED.machines}
BUNDLE_URI = f"http://{BUNDLE_GUEST_ADDRESS}/"

testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("all")


def _machine(host):
    return MACHINES[host.backend.get_hostname()]


def _lsblk(host) -> list[dict]:
    out = host.check_output("lsblk --json --bytes --nodeps -o NAME,SIZE,SERIAL,ROTA,TRAN,TYPE")
    return json.loads(out)["blockdevices"]


def _physical_nics(host) -> dict[str, dict]:
    out = host.check_output(
        "for d in /sys/class/net/*; do [ -e $d/device ] && echo ${d##*/} $(cat $d/address) $(cat $d/mtu); done; true"
    )
    return {name: {"mac": mac, "mtu": int(mtu)} for name, mac, mtu in (line.split() for line in out.splitlines())}


def _nic_by_mac(host, mac: str) -> str:
    for name, nic in _physical_nics(host).items():
        if nic["mac"].lower() == mac:
            return name
    raise AssertionError(f"{host.backend.get_hostname()} has no NIC with MAC {mac}")


def _link_local(host, interface: str) -> str:
    addresses = json.loads(host.check_output(f"ip -json -6 addr show dev {interface} scope link"))
    return addresses[0]["addr_info"][0]["local"]


def _peer(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def test_disks_match_declaration(host):
    assert disk_mismatches(_machine(host), _lsblk(host)) == []


def test_disk_check_catches_an_undeclared_drive(host):
    """The same machine declared with one NVMe drive more must not pass: the comparison is a real check."""
    problems = disk_mismatches(with_extra_nvme(_machine(host)), _lsblk(host))
    assert len(problems) == 1
    assert "NVMe drives differ" in problems[0]
    assert "EXTRA" in problems[0]


def test_nics_match_declaration(host):
    assert nic_mismatches(_machine(host), _physical_nics(host), DECLARED.data_mtu) == []


def test_data_segment_carries_jumbo_frames_to_every_peer(host):
    machine = _machine(host)
    interface = _nic_by_mac(host, machine.data_mac)
    payload = DECLARED.data_mtu - 40 - 8  # IPv6 and ICMPv6 headers
    for peer_name, peer_machine in MACHINES.items():
        if peer_name == machine.name:
            continue
        peer = _peer(peer_name)
        address = _link_local(peer, _nic_by_mac(peer, peer_machine.data_mac))
        result = host.run(f"ping -c 3 -W 5 -M do -s {payload} {address}%{interface}")
        assert result.rc == 0, f"{machine.name} -> {peer_name} over {interface}: {result.stdout}{result.stderr}"
        assert " 0% packet loss" in result.stdout


def test_data_segment_carries_vlan_tagged_frames():
    """Two machines talk over an 802.1Q VLAN on their data NICs (created for the test, then removed)."""
    first, second = list(MACHINES.values())[:2]
    hosts = {m.name: _peer(m.name) for m in (first, second)}
    vlan = "benchvlan42"
    try:
        for machine in (first, second):
            parent = _nic_by_mac(hosts[machine.name], machine.data_mac)
            hosts[machine.name].check_output(
                f"ip link add link {parent} name {vlan} type vlan id 42 && ip link set {vlan} mtu 8996 up"
            )
        peer_address = _wait_for_link_local(hosts[second.name], vlan)
        result = hosts[first.name].run(f"ping -c 3 -W 5 -M do -s 8900 {peer_address}%{vlan}")
        assert result.rc == 0, result.stdout + result.stderr
        tagged = hosts[second.name].check_output(f"cat /proc/net/vlan/{vlan}")
        assert "VID: 42" in tagged
    finally:
        for machine in (first, second):
            hosts[machine.name].run(f"ip link del {vlan}")


def _wait_for_link_local(host, interface: str) -> str:
    # Duplicate address detection keeps a new link-local address tentative for about a second.
    host.check_output(
        f"for i in $(seq 50); do ip -6 addr show dev {interface} scope link | grep -q tentative || "
        f"ip -6 addr show dev {interface} scope link | grep -q inet6 && break; sleep 0.2; done; true"
    )
    return _link_local(host, interface)


def test_baseline_package_installed_from_the_bundle(host):
    assert host.package("nvme-cli").is_installed
    policy = host.check_output("apt-cache policy nvme-cli")
    # " *** 2.13-2 500\n        500 http://10.0.2.100 ironserve/main amd64 Packages": the installed version's source.
    installed_from = r"\*\*\* \S+ \d+\n\s+\d+ " + re.escape(BUNDLE_URI.rstrip("/")) + r" ironserve/main "
    assert re.search(installed_from, policy), policy


def test_bundle_is_the_only_package_source(host):
    uris = set(host.check_output("apt-get indextargets --format '$(REPO_URI)'").split())
    assert uris == {BUNDLE_URI}
    assert host.check_output("ls /etc/apt/sources.list.d").split() == ["ironserve.sources"]
    assert not host.file("/etc/apt/sources.list").exists


def test_no_route_leaves_the_machine(host):
    assert json.loads(host.check_output("ip -json route show default")) == []
    assert json.loads(host.check_output("ip -json -6 route show default")) == []
    routes = json.loads(host.check_output("ip -json route show"))
    assert [r["dst"] for r in routes] == [f"{MGMT_GUEST_ADDRESS.rsplit('.', 1)[0]}.0/24"]
    resolv = host.file("/etc/resolv.conf")
    assert not resolv.exists or "nameserver" not in resolv.content_string


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_qemu_network_is_restricted(machine):
    """On the controller: user-mode networking with restrict=on, SSH forwarded to loopback only, and the
    data NIC on this lab's bridge, which has no address and no member but the lab's taps."""
    state = bench.load_state(LAB_NAME)
    assert state is not None, f"lab {LAB_NAME} has no state file"
    entry = next(m for m in state["machines"] if m["name"] == machine)
    argv = Path(f"/proc/{entry['pid']}/cmdline").read_bytes().decode().split("\0")
    netdevs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-netdev"]
    user = [n for n in netdevs if n.startswith("user,")]
    taps = [n for n in netdevs if n.startswith("tap,")]
    assert len(netdevs) == 2, netdevs
    assert len(user) == 1, netdevs
    assert len(taps) == 1, netdevs
    options = user[0].split(",")
    assert "restrict=on" in options
    forwards = [o for o in options if o.startswith("hostfwd=")]
    assert forwards == [f"hostfwd=tcp:127.0.0.1:{entry['ssh_port']}-:22"]
    tap = dict(o.split("=", 1) for o in taps[0].split(",")[1:])["ifname"]
    bridge = state["bridge"]
    assert Path(f"/sys/class/net/{tap}/master").resolve().name == bridge
    assert sorted(p.name for p in Path(f"/sys/class/net/{bridge}/brif").iterdir()) == sorted(state["taps"])
    addresses = json.loads(
        subprocess.run(
            ["ip", "-json", "addr", "show", "dev", bridge], check=True, capture_output=True, text=True
        ).stdout
    )
    assert addresses[0].get("addr_info", []) == []


def _run_package_source(limit: str, tmp_path: Path, **extra_vars: str) -> subprocess.CompletedProcess:
    playbook = role_playbook(tmp_path, limit, "package_source", become=False, gather_facts=False)
    return ansible_playbook(INVENTORY, playbook, extra_vars, timeout=300)


SOURCES_STATE = "sha256sum /etc/apt/sources.list.d/* /etc/apt/keyrings/*; ls -la /etc/apt/sources.list.d"


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"package_source_bundle_url": "10.0.2.100"}, "package_source_bundle_url must be the bundle's http(s) address"),
        ({"package_source_bundle_key_file": "/nonexistent/ironserve-bundle.asc"}, "which does not exist on"),
        ({"package_source_kind": "mirror"}, "package_source_kind"),
    ],
)
def test_package_source_refuses_bad_input_and_changes_nothing(tmp_path, extra_vars, message):
    first = next(iter(MACHINES))
    target = _peer(first)
    before = target.check_output(SOURCES_STATE)
    result = _run_package_source(first, tmp_path, **extra_vars)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output
    assert "changed=0" in output
    assert target.check_output(SOURCES_STATE) == before


def test_doctor_reaches_every_lab_machine():
    result = subprocess.run(
        [sys.executable, "-m", "ironserve.cli", "doctor", "--inventory", INVENTORY],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok   reachability: {len(MACHINES)} host(s) answer over SSH with Python" in result.stdout
