"""Array planning on probed disks: drive choice, safe mode, adoption, and refusals that name the variable."""

from __future__ import annotations

import pytest
from fakehost import FakeHost
from ironserve_target import probe as probe_lib

from ironserve.storage import parse_md_export, parse_pvs, plan_array

MD_EXPORT = """MD_LEVEL=raid10
MD_DEVICES=4
MD_METADATA=1.2
MD_UUID=3b1f2c4d:5e6f7a8b:9c0d1e2f:3a4b5c6d
MD_DEVNAME=hot
MD_NAME=gpu01:hot
MD_DEVICE_dev_nvme0n1_ROLE=0
MD_DEVICE_dev_nvme0n1_DEV=/dev/nvme0n1
MD_DEVICE_dev_nvme1n1_ROLE=1
MD_DEVICE_dev_nvme1n1_DEV=/dev/nvme1n1
MD_DEVICE_dev_nvme2n1_ROLE=2
MD_DEVICE_dev_nvme2n1_DEV=/dev/nvme2n1
MD_DEVICE_dev_nvme3n1_ROLE=3
MD_DEVICE_dev_nvme3n1_DEV=/dev/nvme3n1
"""


@pytest.fixture
def host(tmp_path) -> dict:
    """A root disk, five NVMe drives (nvme4n1 carries XFS), and a SAS disk."""
    fake = FakeHost(tmp_path)
    fake.virtio_root("vda", "/")
    fake.blkid("vda", 0, "TYPE=ext4\n")
    for index in range(5):
        fake.blkid(fake.nvme(index, f"S{index}", 3840), 0 if index == 4 else 2, "TYPE=xfs\n" if index == 4 else "")
    fake.blkid(fake.sas_disk("a", "ZA1", 8000), 2)
    return probe_lib.probe(probe_lib.System(str(fake.root), fake.commands), ("disks",))


def test_md_export_is_read_with_member_states():
    detail = parse_md_export(MD_EXPORT)
    assert (detail["level"], detail["raid_devices"], detail["name"]) == ("raid10", 4, "gpu01:hot")
    assert detail["members"] == ["nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1"]
    assert parse_md_export("mdadm: cannot open /dev/md/hot: No such file or directory") == {}


def test_free_nvme_drives_are_taken_by_stable_id(host):
    plan = plan_array(host, [], "hot_tier_devices", 10, {}, True, [])
    assert plan["problems"] == []
    assert plan["names"] == ["nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1"]
    assert plan["members"][0] == "/dev/disk/by-id/nvme-eui.0000000000000000"
    assert plan["wipe"] == []


def test_safe_mode_refuses_a_drive_with_data_unless_allowed(host):
    declared = ["S0", "S1", "S2", "/dev/nvme4n1"]
    refused = plan_array(host, declared, "hot_tier_devices", 10, {}, True, [])
    assert refused["problems"] == [
        "refusing /dev/nvme4n1 (/dev/disk/by-id/nvme-eui.0000000000000004): xfs signature. Safe mode keeps data: "
        "list it in hot_tier_allow_destroy to destroy it"
    ]
    allowed = plan_array(host, declared, "hot_tier_devices", 10, {}, True, ["/dev/nvme4n1"])
    assert (allowed["problems"], allowed["wipe"]) == ([], ["/dev/nvme4n1"])


def test_counts_duplicates_missing_and_system_disk_are_all_reported(host):
    plan = plan_array(
        host, ["S0", "/dev/nvme0n1", "/dev/disk/by-id/nvme-GONE", "/dev/vda"], "hot_tier_devices", 10, {}, True, []
    )
    assert plan["problems"] == [
        "hot_tier_devices names /dev/nvme0n1 twice (as /dev/nvme0n1)",
        "hot_tier_devices names /dev/disk/by-id/nvme-GONE, which this host does not have",
        "not enough disks selected to create raid10 array, at least 4 disks needed; hot_tier_devices selects 2: "
        "/dev/nvme0n1, /dev/vda",
        "hot_tier_devices selects /dev/vda, the system disk; it is never used",
    ]
    odd = plan_array(host, ["S0", "S1", "S2", "S3", "/dev/sda"], "hot_tier_devices", 10, {}, True, [])
    assert odd["problems"] == ["raid10 needs an even number of drives; hot_tier_devices selects 5"]


def test_an_existing_array_is_adopted_and_a_level_change_refused(host):
    for disk in host["storage"]["disks"][:4]:
        disk.update(
            in_use=True,
            in_use_reasons=["RAID member signature", f"/dev/{disk['name']} is held by md127"],
            in_use_codes=["signature", "held"],
        )
    existing = parse_md_export(MD_EXPORT)
    adopted = plan_array(host, [], "hot_tier_devices", 10, existing, True, [])
    assert (adopted["problems"], adopted["names"]) == ([], ["nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1"])
    raid1 = dict(existing, level="raid1")
    assert plan_array(host, [], "hot_tier_devices", 10, raid1, True, [])["problems"] == [
        "the existing array is raid1, not raid10; changing the RAID level of an existing array is refused "
        "(move the data, stop the array, then re-run)"
    ]


@pytest.fixture
def sas_host(tmp_path) -> dict:
    """A root disk, an NVMe drive and three SAS disks; sdc carries an LVM signature."""
    fake = FakeHost(tmp_path)
    fake.virtio_root("vda", "/")
    fake.blkid("vda", 0, "TYPE=ext4\n")
    fake.blkid(fake.nvme(0, "N0", 3840), 2)
    for letter in "ab":
        fake.blkid(fake.sas_disk(letter, f"ZA{letter}", 8000), 2)
    fake.blkid(fake.sas_disk("c", "ZAc", 8000), 0, "TYPE=LVM2_member\n")
    return probe_lib.probe(probe_lib.System(str(fake.root), fake.commands), ("disks",))


def test_warm_tier_takes_free_rotational_disks_for_each_level(sas_host):
    plain = plan_array(sas_host, [], "warm_tier_devices", 0, {}, True, [], kind="rotational")
    assert (plain["names"], plain["problems"]) == (["sda", "sdb"], [])
    mirror = plan_array(sas_host, [], "warm_tier_devices", 1, {}, True, [], kind="rotational")
    assert mirror["problems"] == []
    raid6 = plan_array(sas_host, [], "warm_tier_devices", 6, {}, True, [], kind="rotational")
    assert raid6["problems"] == [
        "not enough disks selected to create raid6 array, at least 4 disks needed; warm_tier_devices selects 2: "
        "/dev/sda, /dev/sdb"
    ]
    lvm_disk = plan_array(sas_host, ["ZAa", "ZAc"], "warm_tier_devices", 1, {}, True, [], kind="rotational")
    assert lvm_disk["problems"] == [
        "refusing /dev/sdc (/dev/disk/by-id/scsi-35000c500zac): LVM physical volume signature. Safe mode keeps data: "
        "list it in warm_tier_allow_destroy to destroy it"
    ]


def test_an_existing_volume_group_is_read_from_pvs_and_adopted(sas_host):
    pvs = "  /dev/sdc   warm\n  /dev/md0   other\n"
    existing = parse_pvs(pvs, "warm")
    assert existing == {"level": "lvm", "members": ["sdc"]}
    assert parse_pvs(pvs, "absent") == {}
    adopted = plan_array(sas_host, [], "warm_tier_devices", 0, existing, True, [], kind="rotational")
    assert (adopted["names"], adopted["problems"]) == (["sdc"], [])
    as_mirror = plan_array(sas_host, [], "warm_tier_devices", 1, existing, True, [], kind="rotational")
    assert as_mirror["problems"][-1].startswith("the existing array is lvm, not raid1; changing the RAID level")
