"""The three storage tiers on one machine: NVMe RAID10 hot tier, SAS warm tier (LVM on RAID1), SeaweedFS S3 cold
tier with tiering; safe mode, a failed member, and everything back after a reboot."""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from pathlib import Path

import pytest
import yaml
from apt_logs import check_initramfs_deferred
from lab_ansible import ansible_module, ansible_playbook, role_playbook
from testinfra.utils.ansible_runner import AnsibleRunner

from ironserve.lab import lab as labs

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
PLATFORM = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["platforms"][0]
HOST_VARS = yaml.safe_load((SCENARIO / "host_vars" / f"{PLATFORM['name']}.yml").read_text())
NVME_IDS = [f"/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_{d['serial']}" for d in PLATFORM["nvme"]]
HDD_IDS = [f"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_{d['serial']}" for d in PLATFORM["hdd"]]
KEEP_ID = HDD_IDS[-1]
HEALTH = "/usr/local/sbin/ironserve-md-health"
RCLONE = "RCLONE_CONFIG=/etc/ironserve/rclone.conf /usr/local/bin/rclone"
LAB = f"mol-{os.environ['MOLECULE_SCENARIO_NAME']}"
# The data segment (the lab bridge), for the test that reaches S3 from outside the management network.
DATA_SEGMENT_ADDRESS = "10.96.9.11/24"
CLIENT_ADDRESS = "10.96.9.200/24"

testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("all")


def _detail(host, name: str) -> dict:
    out = host.check_output(f"mdadm --detail --export /dev/md/{name}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _members(detail: dict) -> set[str]:
    return {v for k, v in detail.items() if k.startswith("MD_DEVICE_") and k.endswith("_DEV")}


def _nic(host, mac: str) -> str:
    for line in host.check_output("ip -o link show").splitlines():
        if mac in line:
            return line.split(":")[1].strip()
    raise AssertionError(f"no NIC with {mac}")


def _mgmt_address(host) -> str:
    nic = _nic(host, HOST_VARS["mgmt_network_mac"])
    return host.check_output(f"ip -o -4 addr show dev {nic}").split()[3].split("/")[0]


# Hot tier


def test_raid10_active_with_four_members_under_its_name(host):
    detail = _detail(host, "hot")
    assert (detail["MD_LEVEL"], detail["MD_DEVICES"]) == ("raid10", "4")
    assert _members(detail) == {host.check_output(f"readlink -f {p}") for p in NVME_IDS}
    md = host.check_output("basename $(readlink -f /dev/md/hot)")
    assert host.check_output(f"cat /sys/block/{md}/md/dev-*/state").split() == ["in_sync"] * 4
    assert host.check_output(f"cat /sys/block/{md}/md/degraded") == "0"


def test_xfs_is_aligned_to_the_array(host):
    info = host.check_output("xfs_info /srv/models")
    # 512 KiB chunk = 128 blocks of 4 KiB; RAID10 of four drives has two data drives.
    assert re.search(r"sunit=128\s+swidth=256 blks", info), info


@pytest.mark.parametrize(("device", "path"), [("/dev/md/hot", "/srv/models"), ("/dev/warm/data", "/srv/warm")])
def test_tiers_mounted_by_uuid_with_noatime(host, device, path):
    uuid = host.check_output(f"blkid -s UUID -o value {device}")
    fstab = [line.split() for line in host.file("/etc/fstab").content_string.splitlines() if f" {path} " in line]
    assert fstab == [[f"UUID={uuid}", path, "xfs", "noatime", "0", "0"]]
    mount = host.mount_point(path)
    assert mount.exists
    assert mount.filesystem == "xfs"
    assert "noatime" in mount.options


def test_array_lines_in_mdadm_conf_match_the_arrays(host):
    conf = host.file("/etc/mdadm/mdadm.conf").content_string
    for name in ("hot", "warm"):
        lines = [line for line in conf.splitlines() if line.startswith(f"ARRAY /dev/md/{name} ")]
        assert len(lines) == 1, conf
        assert f"UUID={_detail(host, name)['MD_UUID']}" in lines[0]
    assert "PROGRAM /usr/local/sbin/ironserve-md-event" in conf
    assert host.service("mdmonitor").is_running


# Warm tier


def test_the_initramfs_was_rebuilt_once_for_the_tools_and_mdadm_conf_together(host):
    # Without the deferral the tools' transaction rebuilt it (mdadm and xfsprogs asked), then the role for mdadm.conf.
    initrd = check_initramfs_deferred(host, "mdadm")
    listing = host.check_output(f"lsinitramfs {initrd}").split()
    assert "usr/sbin/mdadm" in listing
    arrays = host.check_output("grep ^ARRAY /etc/mdadm/mdadm.conf")
    held = host.check_output(
        f"unmkinitramfs {initrd} /tmp/initrd-check >/dev/null && "
        "cat /tmp/initrd-check/main/etc/mdadm/mdadm.conf /tmp/initrd-check/etc/mdadm/mdadm.conf "
        "2>/dev/null; rm -rf /tmp/initrd-check"
    )
    for line in arrays.splitlines():
        assert line in held


def test_warm_tier_is_lvm_on_a_raid1_of_the_free_rotational_disks(host):
    detail = _detail(host, "warm")
    assert (detail["MD_LEVEL"], detail["MD_DEVICES"]) == ("raid1", "2")
    # The disk that carries data is not among them: only free disks are taken when none are named.
    assert _members(detail) == {host.check_output(f"readlink -f {p}") for p in HDD_IDS[:2]}
    pvs = host.check_output("pvs --noheadings -o pv_name,vg_name").split()
    assert pvs == [host.check_output("readlink -f /dev/md/warm"), "warm"]
    assert host.check_output("lvs --noheadings -o lv_name warm").strip() == "data"
    assert host.check_output("df --output=size -B1M /srv/warm | tail -1").strip().isdigit()


@pytest.mark.parametrize("role", ["hot_tier", "warm_tier"])
def test_safe_mode_refuses_a_disk_with_data_and_changes_nothing(host, tmp_path, role):
    before = host.check_output("cat /root/keep.sha256; blkid -p -o export " + KEEP_ID)
    tier = role.removesuffix("_tier")
    extra = {f"{role}_array_name": "refused", f"{role}_devices": [*NVME_IDS[:3], KEEP_ID]}
    if role == "warm_tier":
        extra = {
            "warm_tier_array_name": "refused",
            "warm_tier_vg_name": "refused",
            "warm_tier_devices": [HDD_IDS[0], KEEP_ID],
        }
    result = ansible_playbook(INVENTORY, role_playbook(tmp_path, "all", role), extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    keep = host.check_output(f"basename $(readlink -f {KEEP_ID})")
    assert f"{tier} tier on {PLATFORM['name']}:" in output
    assert f"refusing /dev/{keep} ({KEEP_ID}): ext4 signature." in output
    assert f"list it in {role}_allow_destroy to destroy it" in output
    assert "changed=0" in output
    host.run("mount -o ro " + KEEP_ID + " /mnt/keep")
    try:
        assert host.check_output("sha256sum /mnt/keep/data.bin | cut -d' ' -f1") == host.check_output(
            "cat /root/keep.sha256"
        )
    finally:
        host.run("umount /mnt/keep")
    assert host.check_output("cat /root/keep.sha256; blkid -p -o export " + KEEP_ID) == before
    assert not host.file("/dev/md/refused").exists


# Cold tier


def test_seaweedfs_runs_as_its_own_user_bound_to_the_management_address(host):
    assert host.service("ironserve-seaweedfs").is_running
    assert host.service("ironserve-seaweedfs").is_enabled
    assert host.check_output("ps -o user:20= -C weed") == "seaweedfs"
    address = _mgmt_address(host)
    listeners = {line.split()[3] for line in host.check_output("ss -Hltnp | grep '\"weed\"'").splitlines()}
    assert f"{address}:8333" in listeners
    # Reachable only on the management address; SeaweedFS adds loopback listeners for local clients.
    assert {listener.rsplit(":", 1)[0] for listener in listeners} == {address, "127.0.0.1"}, listeners
    assert host.check_output("/usr/local/bin/weed version").split()[2] == "4.48"
    binary = host.file("/opt/ironserve/bin/weed-4.48")
    assert binary.sha256sum == "8dc07b173ff9ad6068a601213174f6009cf7e66684e88d87f0fa20da3dbff876"


def test_s3_is_refused_from_outside_the_management_network(host):
    """A client on the data segment that routes the management address through the machine's data NIC (the host
    accepts packets for any of its addresses on any NIC): dropped by the cold tier's table; without the table, as a
    control, it gets through."""
    from lab_client import client_namespace, connect

    state = labs.load_state(LAB)
    data_mac = next(m["data_mac"] for m in state["machines"] if m["name"] == PLATFORM["name"])
    data_nic = _nic(host, data_mac)
    address = _mgmt_address(host)
    host.check_output(f"ip addr add {DATA_SEGMENT_ADDRESS} dev {data_nic} && ip link set {data_nic} up")
    try:
        gateway = DATA_SEGMENT_ADDRESS.split("/")[0]
        with client_namespace(state["bridge"], CLIENT_ADDRESS, {f"{address}/32": gateway}) as client:
            assert connect(client, address, 8333) == "timeout"
            assert connect(client, address, 9333) == "timeout"
            host.check_output("nft delete table inet ironserve_cold_tier")
            try:
                assert connect(client, address, 8333) == "open"  # the control: it is the table that refuses
            finally:
                host.check_output("systemctl restart ironserve-nft@cold_tier.service")
            assert connect(client, address, 8333) == "timeout"
    finally:
        host.run(f"ip addr del {DATA_SEGMENT_ADDRESS} dev {data_nic}")


def test_s3_keys_are_generated_private_and_never_logged(host, tmp_path):
    credentials = host.file("/etc/ironserve/s3-credentials.json")
    assert (credentials.user, credentials.mode) == ("root", 0o600)
    keys = json.loads(credentials.content_string)
    assert len(keys["secret_key"]) >= 30
    identities = host.file("/etc/ironserve/seaweedfs-s3.json")
    assert (identities.user, identities.mode) == ("seaweedfs", 0o600)
    assert keys["secret_key"] in identities.content_string
    assert host.file("/etc/ironserve/rclone.conf").mode == 0o600
    # A second run, verbose: nothing changes, and neither key appears in what Ansible prints.
    result = ansible_playbook(INVENTORY, role_playbook(tmp_path, "all", "cold_tier"), verbosity=3)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "changed=0" in output
    assert keys["secret_key"] not in output
    assert keys["access_key"] not in output


def test_s3_put_get_list_with_the_generated_keys(host):
    buckets = json.loads(host.check_output(f"{RCLONE} lsjson cold: --dirs-only"))
    assert sorted(b["Name"] for b in buckets) == ["archive", "backups", "models"]
    host.check_output("head -c 2000000 /dev/urandom > /root/blob.bin")
    host.check_output(f"{RCLONE} copyto /root/blob.bin cold:models/check/blob.bin")
    listed = json.loads(host.check_output(f"{RCLONE} lsjson cold:models/check"))
    assert [(o["Name"], o["Size"]) for o in listed] == [("blob.bin", 2000000)]
    assert host.check_output(f"{RCLONE} cat cold:models/check/blob.bin | sha256sum") == host.check_output(
        "sha256sum < /root/blob.bin"
    )
    host.check_output(f"{RCLONE} deletefile cold:models/check/blob.bin")


def test_anonymous_s3_access_is_refused(host):
    address = _mgmt_address(host)
    probe = (
        "import urllib.request, urllib.error\n"
        "for method, path in [('GET', '/'), ('GET', '/models/'), ('PUT', '/models/anonymous.txt')]:\n"
        f"    request = urllib.request.Request('http://{address}:8333' + path, data=b'x' if method == 'PUT' "
        "else None, method=method)\n"
        "    try:\n"
        "        print(method, path, urllib.request.urlopen(request).status)\n"
        "    except urllib.error.HTTPError as error:\n"
        "        print(method, path, error.code, b'AccessDenied' in error.read())\n"
    )
    out = host.check_output(f"python3 -c {shlex.quote(probe)}")
    assert out.splitlines() == ["GET / 403 True", "GET /models/ 403 True", "PUT /models/anonymous.txt 403 True"]


def test_tiering_moves_aged_files_into_the_bucket_and_runs_the_archive_hook(host):
    assert host.service("ironserve-tiering.timer").is_enabled
    host.check_output(
        "mkdir -p /srv/warm/logs/2026 && head -c 500000 /dev/urandom > /srv/warm/logs/2026/aged.bin"
        " && touch -d '40 days ago' /srv/warm/logs/2026/aged.bin && echo fresh > /srv/warm/logs/fresh.txt"
    )
    aged_sum = host.check_output("sha256sum < /srv/warm/logs/2026/aged.bin")
    host.check_output("systemctl start ironserve-tiering.service")
    key = f"cold:archive/{PLATFORM['name']}/srv/warm/logs/2026/aged.bin"
    assert host.check_output(f"{RCLONE} cat {key} | sha256sum") == aged_sum
    assert not host.file("/srv/warm/logs/2026/aged.bin").exists
    assert host.file("/srv/warm/logs/fresh.txt").exists
    archived = f"/srv/warm/tape-gateway/{PLATFORM['name']}/srv/warm/logs/2026/aged.bin"
    assert host.check_output(f"sha256sum < {archived}") == aged_sum
    journal = host.check_output("journalctl -u ironserve-tiering --no-pager -o cat")
    assert "tiering /srv/warm/logs -> cold:archive/" in journal
    assert "running the archive hook" in journal
    # A second pass finds nothing old enough and changes nothing.
    host.check_output("systemctl start ironserve-tiering.service")
    assert host.file("/srv/warm/logs/fresh.txt").exists


# Faults and reboot


def _wait_healthy(host, name: str, seconds: int = 300) -> str:
    deadline = time.monotonic() + seconds
    while True:
        result = host.run(f"{HEALTH} {name}")
        in_sync = host.check_output(f"cat /sys/block/$(basename $(readlink -f /dev/md/{name}))/md/sync_action")
        if result.rc == 0 and in_sync == "idle":
            return result.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"not healthy after {seconds} s: {result.stdout}")
        time.sleep(3)


MD_METRICS = ("node_md_disks_required", "node_md_disks")


def test_a_failed_member_is_reported_degraded_and_re_adding_restores_it(host, tmp_path):
    """The health check says so, and node_exporter's view of the real array fires the monitoring role's RaidDegraded
    (promtool, tests/exporter_rules.py): only for the hot array, and no longer once the member is back."""
    import exporter_rules

    hot = Path(host.check_output("readlink -f /dev/md/hot")).name
    member = host.check_output(f"readlink -f {NVME_IDS[1]}")
    exporter_rules.start_exporter(host, "mdadm")
    try:
        host.check_output(f"mdadm /dev/md/hot --fail {member}")
        try:
            degraded = host.run(f"{HEALTH} hot")
            assert degraded.rc == 2
            assert "hot: DEGRADED" in degraded.stdout
            assert "3 of 4 members active" in degraded.stdout
            every = host.run(HEALTH)
            assert every.rc == 2
            assert "warm: healthy" in every.stdout
            samples = exporter_rules.scrape(host, MD_METRICS, PLATFORM["name"])
            name = PLATFORM["name"]
            expected = [{"device": hot, "host": name, "instance": f"{name}:9100", "job": "node"}]
            exporter_rules.check(tmp_path, samples, "RaidDegraded", expected)
        finally:
            host.run(f"mdadm /dev/md/hot --remove {member}")
            host.check_output(f"mdadm /dev/md/hot --add {member}")
        assert "healthy" in _wait_healthy(host, "hot")
        assert "4 of 4 members active" in host.check_output(f"{HEALTH} hot")
        exporter_rules.check(tmp_path, exporter_rules.scrape(host, MD_METRICS, PLATFORM["name"]), "RaidDegraded", [])
    finally:
        exporter_rules.stop_exporter(host)


def test_after_a_reboot_arrays_mounts_and_s3_come_back(host):
    rebooted = ansible_module(INVENTORY, "all", "ansible.builtin.reboot", "reboot_timeout=600", "--become", timeout=900)
    assert all(result.get("rebooted") for result in rebooted.values()), rebooted
    for name, level in (("hot", "raid10"), ("warm", "raid1")):
        assert host.file(f"/dev/md/{name}").is_symlink
        assert _detail(host, name)["MD_LEVEL"] == level
    assert host.mount_point("/srv/models").exists
    assert host.mount_point("/srv/warm").exists
    assert "table inet ironserve_cold_tier" in host.check_output("nft list tables")
    deadline = time.monotonic() + 120
    while host.run(f"{RCLONE} lsjson cold: --dirs-only").rc != 0:
        assert time.monotonic() < deadline, "S3 did not answer within 120 s of the reboot"
        time.sleep(3)
    buckets = json.loads(host.check_output(f"{RCLONE} lsjson cold: --dirs-only"))
    assert sorted(b["Name"] for b in buckets) == ["archive", "backups", "models"]
    archived = f"cold:archive/{PLATFORM['name']}/srv/warm/logs/2026/aged.bin"
    assert host.run(f"{RCLONE} lsjson {archived}").rc == 0
    assert "healthy" in _wait_healthy(host, "hot")
