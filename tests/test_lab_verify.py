"""The bench's hardware comparison, on lsblk output recorded from a demo lab machine (gpu-a)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from lab_machines import disk_mismatches, nic_mismatches, with_extra_nvme

from ironserve import paths
from ironserve.lab.spec import lab_from_dict

FIXTURES = Path(__file__).parent / "fixtures"
DEMO = lab_from_dict(yaml.safe_load((paths.REPO_ROOT / "inventories/lab/lab.yml").read_text()))
GPU_A = DEMO.machines[0]
# Recorded with: ironserve lab ssh demo gpu-a lsblk --json --bytes --nodeps -o NAME,SIZE,SERIAL,ROTA,TRAN,TYPE
LSBLK = json.loads((FIXTURES / "lsblk-lab-gpu-a.json").read_text())["blockdevices"]


def test_recorded_machine_matches_its_declaration():
    assert disk_mismatches(GPU_A, LSBLK) == []


def test_an_extra_declared_drive_is_reported():
    problems = disk_mismatches(with_extra_nvme(GPU_A), LSBLK)
    assert len(problems) == 1
    assert problems[0].startswith("gpu-a: NVMe drives differ from the declaration: declared DEMOA-NVME0 (2 GiB)")
    assert "gpu-a-EXTRA (1 GiB), found DEMOA-NVME0" in problems[0]


def test_a_missing_drive_and_a_wrong_size_are_reported():
    without_nvme1 = [d for d in LSBLK if d["serial"] != "DEMOA-NVME1"]
    assert (
        "found DEMOA-NVME0 (2 GiB), DEMOA-NVME2 (2 GiB), DEMOA-NVME3 (2 GiB)"
        in disk_mismatches(GPU_A, without_nvme1)[0]
    )
    resized = [dict(d, size=8 * 1024**3) if d["serial"] == "DEMOA-HDD1" else d for d in LSBLK]
    (problem,) = disk_mismatches(GPU_A, resized)
    assert "hard disk drives differ" in problem
    assert "DEMOA-HDD1 (8 GiB)" in problem


def test_rotational_flags_are_checked():
    flipped = [dict(d, rota=False) if d["name"] == "sda" else d for d in LSBLK]
    assert disk_mismatches(GPU_A, flipped) == ["sda (DEMOA-HDD0) is a hard disk reported non-rotational"]
    spinning = [dict(d, rota="1") if d["name"] == "nvme0n1" else d for d in LSBLK]
    assert disk_mismatches(GPU_A, spinning) == ["nvme0n1 (DEMOA-NVME0) is an NVMe drive reported rotational"]


def test_nics_by_mac_and_data_mtu():
    nics = {"enp0s1": {"mac": GPU_A.mgmt_mac, "mtu": 1500}, "enp0s2": {"mac": GPU_A.data_mac, "mtu": 9000}}
    assert nic_mismatches(GPU_A, nics, 9000) == []
    assert nic_mismatches(GPU_A, {**nics, "enp0s2": {"mac": GPU_A.data_mac, "mtu": 1500}}, 9000) == [
        "gpu-a: data NIC enp0s2 has MTU 1500, declared 9000"
    ]
    (problem,) = nic_mismatches(GPU_A, {"enp0s1": nics["enp0s1"]}, 9000)
    assert "NICs differ from the declaration" in problem
