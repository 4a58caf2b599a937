"""Preflight: every mismatch between probe and inventory, each named by its variable."""

from __future__ import annotations

import copy

import pytest
from fakehost import FakeHost
from ironserve_target import probe as probe_lib
from test_probe_gpus import _hgx

from ironserve import preflight, report


@pytest.fixture
def hgx(tmp_path) -> dict:
    """An HGX H100 host with driver, two NVMe drives, a root disk, a management and a data NIC."""
    host = FakeHost(tmp_path)
    _hgx(host, with_driver=True)
    host.virtio_root("vda", "/")
    for index in range(2):
        host.blkid(host.nvme(index, f"S{index}", 3840), 2)
    host.blkid("vda", 0, "TYPE=ext4\n")
    host.nic("eno1", "3c:ec:ef:00:00:03", ["0000:00:1c.0", "0000:02:00.0"], "igb")
    host.nic("ens1f0np0", "b8:3f:d2:00:00:01", ["0000:00:01.0", "0000:19:00.0"], "mlx5_core", mtu=9000)
    return probe_lib.probe(probe_lib.System(str(host.root), host.commands))


MATCHING = {
    "profile": "realtime",
    "gpu_count": 8,
    "gpu_model": "H100",
    "tiers": {"hot": ["/dev/disk/by-id/nvme-eui.0000000000000000", "S1"], "warm": []},
    "mgmt_mac": "3C:EC:EF:00:00:03",
    "data_macs": ["b8:3f:d2:00:00:01"],
}


def _declared(**changes) -> dict:
    declared = copy.deepcopy(MATCHING)
    declared.update(changes)
    return declared


def test_a_matching_inventory_has_no_problems(hgx):
    assert preflight.problems(hgx, MATCHING) == []


def test_every_mismatch_is_listed_at_once(hgx):
    found = preflight.problems(
        hgx,
        _declared(
            gpu_count=4,
            gpu_model="H200",
            tiers={"hot": ["/dev/disk/by-id/nvme-MISSING", "/dev/nvme0n1", "/dev/vda"], "warm": ["S0"]},
            mgmt_mac="00:00:00:00:00:01",
            data_macs=["3c:ec:ef:00:00:01", "00:00:00:00:00:01"],
        ),
    )
    assert found == [
        "ironserve_gpu_count is 4, but the probe found 8 GPU(s): "
        + ", ".join(f"H100 SXM5 80GB at 0000:{bus}:00.0" for bus in ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]),
        found[1],
        "hot_tier_devices names /dev/disk/by-id/nvme-MISSING, which this host does not have",
        "hot_tier_devices names /dev/vda (/dev/vda), the system disk",
        "/dev/nvme0n1 is named in both hot_tier_devices and warm_tier_devices",
        "mgmt_network_mac is 00:00:00:00:00:01, which no NIC of this host has "
        "(found: eno1 3c:ec:ef:00:00:03, ens1f0np0 b8:3f:d2:00:00:01)",
        "data_network_macs lists 3c:ec:ef:00:00:01, which no NIC of this host has "
        "(found: eno1 3c:ec:ef:00:00:03, ens1f0np0 b8:3f:d2:00:00:01)",
        "data_network_macs lists 00:00:00:00:00:01, the management NIC; the data plane must not use it",
    ]
    assert found[1].startswith("ironserve_gpu_model is 'H200', but the probe found: H100 SXM5 80GB at")


def test_a_disk_named_twice_in_one_tier(hgx):
    found = preflight.problems(hgx, _declared(tiers={"hot": ["S0", "/dev/nvme0n1"]}))
    assert found == ["hot_tier_devices names /dev/nvme0n1 twice (as /dev/nvme0n1)"]


def test_profiles_check_vendor_and_compute_capability(hgx):
    assert preflight.problems(hgx, _declared(profile="batch")) == [
        f"ironserve_hardware_profile 'batch' needs amd GPUs, found H100 SXM5 80GB (nvidia) at 0000:{bus}:00.0"
        for bus in ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]
    ]
    assert preflight.problems(hgx, _declared(profile="turbo")) == [
        "ironserve_hardware_profile is 'turbo'; use one of: batch, edge, none, realtime"
    ]
    old = copy.deepcopy(hgx)
    for gpu in old["gpu"]["gpus"]:
        gpu["compute_capability"] = "7.0"
    assert preflight.problems(old, _declared())[0] == (
        "ironserve_hardware_profile 'realtime' needs compute capability 8.0 or newer, H100 SXM5 80GB has 7.0"
    )


def test_image_build_skips_gpu_checks_and_none_expects_no_gpu(hgx):
    without_gpus = copy.deepcopy(hgx)
    without_gpus["gpu"]["gpus"] = []
    assert preflight.problems(without_gpus, _declared(image_build=True)) == []
    assert preflight.problems(without_gpus, _declared(profile="none", gpu_count=0, gpu_model=None)) == []
    assert (
        "needs GPUs, and the probe found none"
        in preflight.problems(without_gpus, _declared(gpu_count=None, gpu_model=None))[0]
    )


def test_markdown_report_names_every_part(hgx):
    text = report.markdown("gpu01", hgx)
    assert text.startswith("# Hardware report: gpu01\n")
    assert "## GPUs: 8 (driver 580.95.05, CUDA 13.0; NVSwitch: yes)" in text
    assert "| 0000:18:00.0 | H100 SXM5 80GB | hopper | 9.0 | 79.6 | supported | yes | 0 | Disabled | Enabled |" in text
    assert "| /dev/nvme0n1 | nvme | no | 3.8 TiB | S0 | /dev/disk/by-id/nvme-eui.0000000000000000 | 0 | free |" in text
    assert "system disk (holds /, /boot or /boot/efi); /dev/vda mounted on /; ext4 signature" in text
    assert "| ens1f0np0 | b8:3f:d2:00:00:01 | mlx5_core | 0000:19:00.0 | 100000 | 9000 | up | 0 | - |" in text
    assert "## GPU to NIC affinity" in text


def test_tier_mount_paths_must_not_nest_or_coincide(hgx):
    nested = {"hot_tier_mount_path": "/srv/warm/models", "warm_tier_mount_path": "/srv/warm"}
    assert preflight.problems(hgx, _declared(mounts=nested)) == [
        "hot_tier_mount_path (/srv/warm/models) is inside warm_tier_mount_path (/srv/warm); mount the tiers side "
        "by side, for example /srv/models and /srv/warm"
    ]
    same = {"hot_tier_mount_path": "/srv/data", "warm_tier_mount_path": "/srv/data"}
    assert preflight.problems(hgx, _declared(mounts=same)) == [
        "hot_tier_mount_path and warm_tier_mount_path are both /srv/data; each tier needs its own mount path"
    ]
    root = {"hot_tier_mount_path": "/", "warm_tier_mount_path": "/srv/warm"}
    assert preflight.problems(hgx, _declared(mounts=root))[0] == (
        "hot_tier_mount_path is '/'; it must be an absolute folder of its own, like /srv/models"
    )
    side_by_side = {"hot_tier_mount_path": "/srv/models", "warm_tier_mount_path": "/srv/warm"}
    assert preflight.problems(hgx, _declared(mounts=side_by_side)) == []


def test_a_release_the_roles_do_not_pin_packages_for_is_refused(hgx):
    on_trixie = {**hgx, "host": {**hgx["host"], "os_id": "debian", "os_version": "13"}}
    assert preflight.problems(on_trixie, MATCHING) == []
    on_noble = {
        **hgx,
        "host": {**hgx["host"], "os_id": "ubuntu", "os_version": "24.04", "os_name": "Ubuntu 24.04.3 LTS"},
    }
    assert preflight.problems(on_noble, MATCHING) == [
        "the host runs Ubuntu 24.04.3 LTS, and the roles pin the packages of Debian 13 (trixie): install that "
        "release, or add the pins for this one (roles/*/vars/<OS>.yml)"
    ]
