"""Light machines: a real Debian 13 under systemd-nspawn, with its own init, identity and network stack, on the
lab's data segment like a QEMU machine, its packages from the bundle alone, sharing this machine's kernel."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path

import testinfra
import yaml
from lab_ansible import ansible_playbook, role_playbook
from testinfra.utils.ansible_runner import AnsibleRunner

from ironserve.lab import lab as bench
from ironserve.lab.spec import BUNDLE_GUEST_ADDRESS, MGMT_GUEST_ADDRESS, lab_from_platforms

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
LAB_NAME = "mol-" + os.environ["MOLECULE_SCENARIO_NAME"]
DECLARED = lab_from_platforms(LAB_NAME, yaml.safe_load(Path(os.environ["MOLECULE_FILE"]).read_text())["platforms"])
MACHINES = {m.name: m for m in DECLARED.machines}

testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("all")


def _nic(host, mac: str) -> dict:
    links = json.loads(host.check_output("ip -json -details link show"))
    matches = [link for link in links if link.get("address") == mac]
    assert len(matches) == 1, f"{host.backend.get_hostname()}: NICs with MAC {mac}: {matches}"
    return matches[0]


# Units of the baseline tools that need hardware a container has none of: nvme-cli's fabric autoconnect scans
# /sys/class/nvme-subsystem, which only a kernel with NVMe devices has.
NEEDS_HARDWARE = {"nvmf-autoconnect.service"}


def test_it_runs_its_own_systemd_to_the_end_of_boot(host):
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    failed = {line.split()[0] for line in host.check_output("systemctl --failed --no-legend --plain").splitlines()}
    assert failed <= NEEDS_HARDWARE, failed
    assert state == ("degraded" if failed else "running")
    assert host.check_output("systemd-detect-virt --container") == "systemd-nspawn"
    # A container shares the controller's kernel: this is why disk, module and RDMA scenarios stay on QEMU.
    assert host.check_output("uname -r") == platform.release()


def test_each_machine_has_its_own_identity(host):
    name = host.backend.get_hostname()
    assert host.check_output("hostname") == name
    ids = {
        m: testinfra.get_host(f"ansible://{m}?ansible_inventory={INVENTORY}").file("/etc/machine-id") for m in MACHINES
    }
    assert len({f.content_string.strip() for f in ids.values()}) == len(MACHINES)
    fingerprints = {
        m: testinfra.get_host(f"ansible://{m}?ansible_inventory={INVENTORY}").check_output(
            "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
        )
        for m in MACHINES
    }
    assert len(set(fingerprints.values())) == len(MACHINES)


def test_the_nics_carry_the_declared_macs_and_the_management_plane_reaches_nothing(host):
    machine = MACHINES[host.backend.get_hostname()]
    mgmt = _nic(host, machine.mgmt_mac)
    addresses = json.loads(host.check_output(f"ip -json -4 addr show dev {mgmt['ifname']}"))
    assert [a["local"] for a in addresses[0]["addr_info"]] == [MGMT_GUEST_ADDRESS]
    assert _nic(host, machine.data_mac)["mtu"] == DECLARED.data_mtu
    assert json.loads(host.check_output("ip -json route show default")) == []


def test_the_data_segment_carries_jumbo_frames_between_light_machines(host):
    name = host.backend.get_hostname()
    nic = _nic(host, MACHINES[name].data_mac)["ifname"]
    for peer in sorted(set(MACHINES) - {name}):
        other = testinfra.get_host(f"ansible://{peer}?ansible_inventory={INVENTORY}")
        peer_nic = _nic(other, MACHINES[peer].data_mac)["ifname"]
        address = json.loads(other.check_output(f"ip -json -6 addr show dev {peer_nic} scope link"))[0]["addr_info"][0]
        result = host.run(f"ping -c 3 -W 5 -M do -s {DECLARED.data_mtu - 48} {address['local']}%{nic}")
        assert result.rc == 0, result.stdout + result.stderr
        assert " 0% packet loss" in result.stdout


def test_packages_come_from_the_bundle_alone(host):
    assert set(host.check_output("apt-get indextargets --format '$(REPO_URI)'").split()) == {
        f"http://{BUNDLE_GUEST_ADDRESS}/"
    }
    policy = host.check_output("apt-cache policy nvme-cli")
    assert re.search(
        r"\*\*\* \S+ \d+\n\s+\d+ " + re.escape(f"http://{BUNDLE_GUEST_ADDRESS}") + " ironserve/main ", policy
    )


def test_exclusive_sources_keep_ironserves_own_lists_and_a_rerun_changes_nothing(host, tmp_path):
    # A site that mirrors NVIDIA's repositories gets their lists from the GPU stage (ironserve-nvidia-*.list); the
    # base stage's package_source must keep them, and disable any other source. Comment-only lists: apt reads none.
    sources = "/etc/apt/sources.list.d"
    host.check_output(
        f"echo '# NVIDIA CUDA mirror (written by roles/nvidia_driver)' > {sources}/ironserve-nvidia-cuda.list;"
        f" echo '# a source of the site' > {sources}/site-extra.list"
    )
    playbook = role_playbook(tmp_path, host.backend.get_hostname(), "package_source")
    first = ansible_playbook(INVENTORY, playbook)
    again = ansible_playbook(INVENTORY, playbook)
    listing = host.check_output(f"ls {sources}").split()
    host.check_output(f"rm -f {sources}/ironserve-nvidia-cuda.list {sources}/site-extra.list.disabled")
    assert first.returncode == 0, first.stdout[-3000:]
    assert sorted(listing) == ["ironserve-nvidia-cuda.list", "ironserve.sources", "site-extra.list.disabled"]
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in again.stdout, again.stdout[-3000:]


def test_on_the_controller_each_machine_is_an_nspawn_process_of_this_lab():
    state = bench.load_state(LAB_NAME)
    assert state is not None
    bridge_members = set(os.listdir(f"/sys/class/net/{state['bridge']}/brif"))
    for entry in state["machines"]:
        argv = Path(f"/proc/{entry['pid']}/cmdline").read_bytes().decode().split("\0")
        assert argv[0].endswith("systemd-nspawn")
        assert {"--private-network", "--register=no", "--keep-unit"} <= set(argv)
        assert entry["data_peer"] in bridge_members
        assert entry["mgmt_peer"] not in bridge_members
        # No address of this machine's on either of the machine's links.
        for peer in (entry["data_peer"], entry["mgmt_peer"]):
            shown = subprocess.run(
                ["ip", "-json", "addr", "show", "dev", peer], capture_output=True, text=True, check=True
            )
            assert json.loads(shown.stdout)[0]["addr_info"] == []
