"""The probe on a lab machine: exactly the emulated hardware, a formatted disk in use, soft-RoCE, and
preflight refusing a mismatched inventory without changing anything."""

from __future__ import annotations

import json
import os
import statistics
import time
from functools import cache
from pathlib import Path

import yaml
from ironserve_target import facts
from lab_ansible import ansible_module, ansible_playbook
from testinfra.utils.ansible_runner import AnsibleRunner

from ironserve.lab.spec import lab_from_platforms

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
LAB = lab_from_platforms(
    "mol-" + os.environ["MOLECULE_SCENARIO_NAME"],
    yaml.safe_load(Path(os.environ["MOLECULE_FILE"]).read_text())["platforms"],
)
MACHINE = LAB.machines[0]
GIB = 1024**3

# probe-b is the bench checks' peer (test_bench_machines.py); the probe and preflight run on probe-a
testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("gpu_servers")


def _module(name: str) -> tuple[dict, float]:
    """Run one module on the machine through Ansible; return its result and the wall time."""
    started = time.monotonic()
    result = ansible_module(INVENTORY, MACHINE.name, name, "", "--become")[MACHINE.name]
    return result, time.monotonic() - started


@cache
def hw() -> dict:
    return _module("ironserve_probe")[0]["ansible_facts"]["ironserve_hw"]


def _disks() -> dict[str, dict]:
    return {d["serial"] or d["name"]: d for d in hw()["storage"]["disks"]}


def test_probe_reports_exactly_the_emulated_disks():
    disks = _disks()
    nvme = {s: d for s, d in disks.items() if d["kind"] == "nvme"}
    hdd = {s: d for s, d in disks.items() if d["kind"] == "sas"}
    assert {s: d["size_bytes"] for s, d in nvme.items()} == {d.serial: d.size_gb * GIB for d in MACHINE.nvme}
    assert {s: d["size_bytes"] for s, d in hdd.items()} == {d.serial: d.size_gb * GIB for d in MACHINE.hdd}
    assert not any(d["rotational"] for d in nvme.values())
    assert all(d["rotational"] for d in hdd.values())
    for serial, disk in {**nvme, **hdd}.items():
        assert serial in disk["by_id"]
        assert Path(disk["by_id"]).parent == Path("/dev/disk/by-id")
    others = {s: d for s, d in disks.items() if s not in nvme and s not in hdd}
    assert list(others) == ["vda"]
    assert others["vda"]["in_use_reasons"][0] == "system disk (holds /, /boot or /boot/efi)"
    assert others["vda"]["in_use_codes"][0] == facts.SYSTEM_DISK


def test_the_probe_of_a_real_machine_matches_the_facts_schema():
    assert facts.problems(hw()) == []
    # A role's own probe: the same picture, registered, and the host's fact left as the preflight stage set it.
    private = ansible_module(INVENTORY, MACHINE.name, "ironserve_probe", "sections=disks fact=false", "--become")
    result = private[MACHINE.name]
    assert "ansible_facts" not in result or "ironserve_hw" not in result["ansible_facts"]
    assert facts.problems(result["hw"]) == []
    assert {d["serial"] for d in result["hw"]["storage"]["disks"]} == {d["serial"] for d in hw()["storage"]["disks"]}


def test_formatted_disk_is_in_use_with_its_reason_and_the_rest_are_free():
    disks = _disks()
    assert disks["PRBA-HDD1"]["in_use"] is True
    assert disks["PRBA-HDD1"]["in_use_reasons"] == ["ext4 signature"]
    assert disks["PRBA-HDD1"]["in_use_codes"] == [facts.SIGNATURE]
    assert sorted(disks[s]["name"] for s in disks if not disks[s]["in_use"]) == sorted(hw()["storage"]["free"])
    assert {s for s, d in disks.items() if not d["in_use"]} == {d.serial for d in MACHINE.nvme} | {"PRBA-HDD0"}


def test_probe_reports_both_nics_and_the_soft_roce_device():
    nics = {n["mac"]: n for n in hw()["network"]["nics"]}
    assert set(nics) == {MACHINE.mgmt_mac, MACHINE.data_mac}
    data = nics[MACHINE.data_mac]
    assert (data["mtu"], data["driver"], data["link"]) == (LAB.data_mtu, "virtio_net", "up")
    [rdma] = data["rdma"]
    gids = rdma.pop("gids")
    assert rdma == {
        "device": "rxe0",
        "port": 1,
        "netdev": data["name"],
        "state": "ACTIVE",
        "link_layer": "Ethernet",
        # rdma_rxe reports a nominal 2.5 Gb/s whatever its NIC does; the check's floor ignores it for soft-RoCE.
        "rate_gbits": 2.5,
        "soft_roce": True,
    }
    # The data NIC has only its IPv6 link-local address here: one RoCE v2 GID for it, on that NIC.
    assert [(g["type"], g["netdev"]) for g in gids if g["gid"].startswith("fe80:")] == [("RoCE v2", data["name"])]
    assert nics[MACHINE.mgmt_mac]["rdma"] == []


def test_probe_reports_no_gpu_and_the_host():
    assert hw()["gpu"]["count"] == 0
    assert hw()["gpu"]["nvswitch"] is False
    host = hw()["host"]
    assert (host["os_id"], host["os_version"], host["threads"]) == ("debian", "13", MACHINE.cpus)
    assert abs(host["memory_mib"] - MACHINE.memory_mb) < MACHINE.memory_mb * 0.2
    assert host["virtualised"] is True


def test_hardware_report_was_written_for_the_machine():
    reports = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "artifacts" / "hardware"
    saved = json.loads((reports / f"{MACHINE.name}.json").read_text())
    assert saved["host"] == MACHINE.name
    assert {d["serial"] for d in saved["ironserve_hw"]["storage"]["disks"]} >= {d.serial for d in MACHINE.nvme}
    markdown = (reports / f"{MACHINE.name}.md").read_text()
    assert markdown.startswith(f"# Hardware report: {MACHINE.name}")
    assert "PRBA-HDD1" in markdown
    assert "ext4 signature" in markdown


def test_preflight_lists_each_mismatch_and_changes_nothing(host):
    before = host.check_output(
        "blkid -p -o export /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_PRBA-HDD1; cat /root/probe-data.sha256"
    )
    extra = {
        "ironserve_image_build": False,
        "ironserve_hardware_profile": "realtime",
        "ironserve_gpu_count": 2,
        "hot_tier_devices": [
            *[f"/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_{d.serial}" for d in MACHINE.nvme],
            "/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_PRBA-NVME9",
        ],
    }
    result = ansible_playbook(INVENTORY, PROJECT / "playbooks/preflight.yml", extra, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"Preflight found 3 problem(s) on {MACHINE.name}:" in output
    assert "ironserve_gpu_count is 2, but the probe found 0 GPU(s): none" in output
    assert "ironserve_hardware_profile 'realtime'" in output
    assert (
        "hot_tier_devices names /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_PRBA-NVME9, which this host does not have" in output
    )
    assert "changed=0" in output
    assert (
        host.check_output(
            "blkid -p -o export /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_PRBA-HDD1; cat /root/probe-data.sha256"
        )
        == before
    )


def test_benchmark_probe_against_a_full_setup_gather():
    """Printed, not asserted on time: the probe against ansible.builtin.setup, alternating, on the same machine."""
    probe_times, setup_times = [], []
    for _ in range(3):
        probe_result, probe_seconds = _module("ironserve_probe")
        setup_result, setup_seconds = _module("ansible.builtin.setup")
        assert probe_result["ansible_facts"]["ironserve_hw"]["storage"]["disks"]
        assert setup_result["ansible_facts"]["ansible_devices"]
        probe_times.append(probe_seconds)
        setup_times.append(setup_seconds)
    probe_median, setup_median = statistics.median(probe_times), statistics.median(setup_times)
    print(
        f"\nBENCHMARK probe vs setup on {MACHINE.name} (3 alternating runs, wall time through ansible): "
        f"ironserve_probe median {probe_median:.2f} s, ansible.builtin.setup median {setup_median:.2f} s, "
        f"setup/probe = {setup_median / probe_median:.2f}x"
    )
