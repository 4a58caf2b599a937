"""The hot tier on four emulated NVMe drives: RAID10 under its name, aligned XFS mounted by UUID, safe mode,
a failed member reported and restored, and the array back under its name after a reboot."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

from ironserve.lab.verify import ansible_module, ansible_playbook

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PLATFORM = yaml.safe_load(Path(os.environ["MOLECULE_FILE"]).read_text())["platforms"][0]
NVME_IDS = [f"/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_{d['serial']}" for d in PLATFORM["nvme"]]
HDD_ID = f"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_{PLATFORM['hdd'][0]['serial']}"
HEALTH = "/usr/local/sbin/ironserve-hot-tier-health"

testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("all")


def _detail(host) -> dict:
    out = host.check_output("mdadm --detail --export /dev/md/hot")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_raid10_active_with_four_members_under_its_name(host):
    detail = _detail(host)
    assert (detail["MD_LEVEL"], detail["MD_DEVICES"]) == ("raid10", "4")
    members = {v for k, v in detail.items() if k.startswith("MD_DEVICE_") and k.endswith("_DEV")}
    assert members == {host.check_output(f"readlink -f {p}") for p in NVME_IDS}
    md = host.check_output("basename $(readlink -f /dev/md/hot)")
    assert host.check_output(f"cat /sys/block/{md}/md/dev-*/state").split() == ["in_sync"] * 4
    assert host.check_output(f"cat /sys/block/{md}/md/degraded") == "0"
    assert host.file("/dev/md/hot").is_symlink


def test_xfs_is_aligned_to_the_array(host):
    info = host.check_output("xfs_info /srv/models")
    # 512 KiB chunk = 128 blocks of 4 KiB; RAID10 of four drives has two data drives.
    assert re.search(r"sunit=128\s+swidth=256 blks", info), info


def test_mounted_by_uuid_with_noatime(host):
    uuid = host.check_output("blkid -s UUID -o value /dev/md/hot")
    fstab = [line.split() for line in host.file("/etc/fstab").content_string.splitlines() if "/srv/models" in line]
    assert fstab == [[f"UUID={uuid}", "/srv/models", "xfs", "noatime", "0", "0"]]
    mount = host.mount_point("/srv/models")
    assert mount.exists
    assert mount.filesystem == "xfs"
    assert "noatime" in mount.options


def test_array_line_in_mdadm_conf_matches_the_array(host):
    uuid = _detail(host)["MD_UUID"]
    lines = [
        line
        for line in host.file("/etc/mdadm/mdadm.conf").content_string.splitlines()
        if line.startswith("ARRAY /dev/md/hot ")
    ]
    assert len(lines) == 1
    assert f"UUID={uuid}" in lines[0]
    assert "PROGRAM /usr/local/sbin/ironserve-md-event" in host.file("/etc/mdadm/mdadm.conf").content_string
    assert host.service("mdmonitor").is_running


def test_safe_mode_refuses_a_disk_with_data_and_changes_nothing(host, tmp_path):
    before = host.check_output("cat /root/keep.sha256; blkid -p -o export " + HDD_ID)
    playbook = tmp_path / "refuse.yml"
    playbook.write_text("- name: Hot tier over a disk with data\n  hosts: all\n  become: true\n  roles: [hot_tier]\n")
    extra = {"hot_tier_array_name": "refused", "hot_tier_devices": [*NVME_IDS[:3], HDD_ID]}
    result = ansible_playbook(INVENTORY, playbook, extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"refusing /dev/sda ({HDD_ID}): ext4 signature." in output
    assert "list it in hot_tier_allow_destroy to destroy it" in output
    assert "changed=0" in output
    host.run("mount " + HDD_ID + " /mnt/keep")
    try:
        assert host.check_output("sha256sum /mnt/keep/data.bin | cut -d' ' -f1") == host.check_output(
            "cat /root/keep.sha256"
        )
    finally:
        host.run("umount /mnt/keep")
    assert host.check_output("cat /root/keep.sha256; blkid -p -o export " + HDD_ID) == before
    assert not host.file("/dev/md/refused").exists


def _wait_healthy(host, seconds: int = 300) -> str:
    deadline = time.monotonic() + seconds
    while True:
        result = host.run(HEALTH)
        in_sync = host.check_output("cat /sys/block/$(basename $(readlink -f /dev/md/hot))/md/sync_action")
        if result.rc == 0 and in_sync == "idle":
            return result.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"not healthy after {seconds} s: {result.stdout}")
        time.sleep(3)


def test_a_failed_member_is_reported_degraded_and_re_adding_restores_it(host):
    member = host.check_output(f"readlink -f {NVME_IDS[1]}")
    host.check_output(f"mdadm /dev/md/hot --fail {member}")
    try:
        degraded = host.run(HEALTH)
        assert degraded.rc == 2
        assert "DEGRADED" in degraded.stdout
        assert "3 of 4 members active" in degraded.stdout
    finally:
        host.run(f"mdadm /dev/md/hot --remove {member}")
        host.check_output(f"mdadm /dev/md/hot --add {member}")
    assert "healthy" in _wait_healthy(host)
    assert "4 of 4 members active" in host.check_output(HEALTH)


def test_after_a_reboot_the_array_assembles_under_its_name_and_mounts(host):
    rebooted = ansible_module(INVENTORY, "all", "ansible.builtin.reboot", "reboot_timeout=600", "--become", timeout=900)
    assert all(result.get("rebooted") for result in rebooted.values()), rebooted
    assert host.file("/dev/md/hot").is_symlink
    assert _detail(host)["MD_LEVEL"] == "raid10"
    assert host.mount_point("/srv/models").exists
    assert "healthy" in _wait_healthy(host)
