"""The probe's disk section: kinds, stable ids and every reason a disk is in use."""

from __future__ import annotations

import pytest
from fakehost import FakeHost
from ironserve_target.probe import disks as disk_section


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path)


def test_disks_kinds_ids_and_in_use_reasons(host):
    host.virtio_root("vda", "/")
    free_nvme = host.nvme(0, "S64GNE0R600001", 3840)
    host.nvme(1, "S64GNE0R600002", 3840, numa=1)
    raid_nvme = host.nvme(2, "S64GNE0R600003", 3840)
    sas = host.sas_disk("a", "ZA1ABC01", 8000)
    partitioned = host.sas_disk("b", "ZA1ABC02", 8000)
    part = host.partition(partitioned, 1)
    host.mount((host.root / f"sys/class/block/{part}/dev").read_text().strip(), "/srv/old")
    host.blkid(free_nvme, 2)
    host.blkid("nvme1n1", 0, "TYPE=xfs\nUUID=1234\n")
    host.blkid(raid_nvme, 0, "TYPE=linux_raid_member\nUUID=abcd\n")
    host.blkid(sas, 2)
    host.blkid(partitioned, 0, "PTTYPE=gpt\n")
    host.blkid("vda", 0, "TYPE=ext4\n")
    storage = disk_section.probe_disks(host.system())
    disks = {d["name"]: d for d in storage["disks"]}
    assert storage["free"] == ["nvme0n1", "sda"]

    nvme = disks["nvme0n1"]
    assert (nvme["kind"], nvme["rotational"], nvme["size_bytes"]) == ("nvme", False, 3840 * 1024**3)
    assert (nvme["serial"], nvme["model"], nvme["numa_node"]) == ("S64GNE0R600001", "SAMSUNG MZWLR3T8HBLS", 0)
    assert nvme["by_id"] == "/dev/disk/by-id/nvme-eui.0000000000000000"
    assert disks["nvme1n1"]["numa_node"] == 1
    assert disks["nvme1n1"]["in_use_reasons"] == ["xfs signature"]
    assert disks["nvme2n1"]["in_use_reasons"] == ["RAID member signature"]

    assert (disks["sda"]["kind"], disks["sda"]["rotational"], disks["sda"]["serial"]) == ("sas", True, "ZA1ABC01")
    assert disks["sda"]["by_id"] == "/dev/disk/by-id/scsi-35000c500za1abc01"
    assert disks["sdb"]["in_use_reasons"] == [
        "/dev/sdb1 mounted on /srv/old",
        "has partitions (sdb1)",
        "partition table (gpt) signature",
    ]
    assert disks["vda"]["in_use_reasons"][:2] == ["system disk (holds /, /boot or /boot/efi)", "/dev/vda mounted on /"]


def test_swap_holders_and_missing_blkid(host):
    swap = host.nvme(0, "S1", 100)
    held = host.nvme(1, "S2", 100)
    host.write("/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1 partition 1 0 -2\n")
    host.mkdir(f"/sys/class/block/{held}/holders/md0")
    system = host.system({})  # no blkid answers: as if the tool were missing
    disks = {d["name"]: d for d in disk_section.probe_disks(system)["disks"]}
    assert disks[swap]["in_use_reasons"] == ["/dev/nvme0n1 is active swap"]
    assert disks[held]["in_use_reasons"] == ["/dev/nvme1n1 is held by md0"]
    assert "filesystem and RAID signatures (blkid absent)" in system.unknown
