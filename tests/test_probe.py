"""The hardware probe on host trees shaped like real machines (see fakehost.py) and recorded tool output."""

from __future__ import annotations

from pathlib import Path

import ironserve_probe as probe_lib
import pytest
from fakehost import FakeHost

NVIDIA_SMI_HGX = (Path(__file__).parent / "fixtures/nvidia-smi/hgx-h100-8gpu.xml").read_text()
HGX_BUSES = ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path)


def _system(host: FakeHost) -> probe_lib.System:
    return probe_lib.System(str(host.root), host.commands)


def _hgx(host: FakeHost, with_driver: bool) -> None:
    for index, bus in enumerate(HGX_BUSES):
        host.pci(
            ["0000:00:01.0", f"0000:{bus}:00.0"],
            "0x10de",
            "0x2330",
            "0x030200",
            numa=index // 4,
            driver="nvidia" if with_driver else "",
        )
    for index in range(4):
        host.pci(["0000:00:02.0", f"0000:{0xC0 + index:02x}:00.0"], "0x10de", "0x22a3", "0x068000", numa=1)
    if with_driver:
        host.commands["nvidia-smi -q -x"] = (0, NVIDIA_SMI_HGX)


def test_hgx_board_without_driver_comes_from_pci(host):
    _hgx(host, with_driver=False)
    system = _system(host)
    gpu = probe_lib.probe_gpus(system)
    assert gpu["count"] == 8
    assert gpu["models"] == ["H100 SXM5 80GB"]
    assert gpu["nvswitch"] is True
    assert [s["model"] for s in gpu["nvswitches"]] == ["H100 NVSwitch (gen 3)"] * 4
    first = gpu["gpus"][0]
    assert first["pci_address"] == "0000:18:00.0"
    assert (first["architecture"], first["compute_capability"], first["memory_gib"]) == ("hopper", "9.0", 80)
    assert (first["open_kernel_module"], first["fp8"], first["source"]) == ("supported", True, "sysfs")
    assert [g["numa_node"] for g in gpu["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert gpu["driver_loaded"] is False
    assert first["mig_mode"] is None
    assert any("nvidia-smi absent" in item for item in system.unknown)


def test_hgx_board_with_driver_adds_nvidia_smi_facts(host):
    _hgx(host, with_driver=True)
    system = _system(host)
    gpu = probe_lib.probe_gpus(system)
    assert gpu["driver_loaded"] is True
    assert (gpu["driver_version"], gpu["cuda_version"]) == ("580.95.05", "13.0")
    for index, entry in enumerate(gpu["gpus"]):
        assert entry["source"] == "nvidia-smi"
        assert (entry["mig_mode"], entry["ecc_mode"], entry["memory_mib"]) == ("Disabled", "Enabled", 81559)
        assert entry["uuid"].startswith(f"GPU-{index:08x}")
        assert entry["kernel_driver"] == "nvidia"
    assert system.unknown == []


def test_a100_pcie_without_nvswitch_and_an_unknown_part(host):
    for index in range(4):
        host.pci(["0000:00:01.0", f"0000:{0x30 + index:02x}:00.0"], "0x10de", "0x20b5", "0x030200", numa=0)
    host.pci(["0000:00:01.0", "0000:40:00.0"], "0x10de", "0x9999", "0x030200", numa=0)
    gpu = probe_lib.probe_gpus(_system(host))
    assert gpu["count"] == 5
    assert gpu["nvswitch"] is False
    assert gpu["models"] == ["A100 PCIe 80GB", "unknown nvidia device 0x9999"]
    unknown = gpu["gpus"][-1]
    assert unknown["known"] is False
    assert unknown["architecture"] is None


def test_amd_instinct_is_recognised_and_amd_graphics_is_not_a_gpu(host):
    for index in range(2):
        host.pci(["0000:00:01.0", f"0000:{0x50 + index:02x}:00.0"], "0x1002", "0x740c", "0x038000", numa=0)
    host.pci(["0000:00:08.0"], "0x1002", "0x1638", "0x030000", numa=0)  # an APU's display controller
    system = _system(host)
    gpu = probe_lib.probe_gpus(system)
    assert gpu["models"] == ["Instinct MI250X/MI250"]
    assert gpu["gpus"][0]["architecture"] == "cdna2"
    assert gpu["gpus"][0]["fp8"] is False
    assert "AMD driver facts (rocm-smi absent or failing)" in system.unknown
    host.commands[" ".join(probe_lib.ROCM_SMI)] = (0, '{"system": {"Driver version": "6.10.5"}}')
    assert {g["driver_version"] for g in probe_lib.probe_gpus(_system(host))["gpus"]} == {"6.10.5"}


def test_jetson_from_device_tree(host):
    host.write("/proc/device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit\x00")
    gpu = probe_lib.probe_gpus(_system(host))
    assert gpu["count"] == 1
    assert gpu["gpus"][0]["model"] == "Jetson AGX Orin"
    assert gpu["gpus"][0]["compute_capability"] == "8.7"
    assert gpu["gpus"][0]["integrated"] is True


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
    storage = probe_lib.probe_disks(_system(host))
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
    system = probe_lib.System(str(host.root), {})  # no blkid answers: as if the tool were missing
    disks = {d["name"]: d for d in probe_lib.probe_disks(system)["disks"]}
    assert disks[swap]["in_use_reasons"] == ["/dev/nvme0n1 is active swap"]
    assert disks[held]["in_use_reasons"] == ["/dev/nvme1n1 is held by md0"]
    assert "filesystem and RAID signatures (blkid absent)" in system.unknown


# A ConnectX port with 198.51.100.11: link-local GIDs at 0 and 1, the IPv4-mapped ones at 2 (v1) and 3 (v2).
ROCE_GIDS = (
    (0, "fe80:0000:0000:0000:ba3f:d2ff:fe00:0001", "IB/RoCE v1"),
    (1, "fe80:0000:0000:0000:ba3f:d2ff:fe00:0001", "RoCE v2"),
    (2, "0000:0000:0000:0000:0000:ffff:c633:640b", "IB/RoCE v1"),
    (3, "0000:0000:0000:0000:0000:ffff:c633:640b", "RoCE v2"),
)


def test_nics_rdma_and_gpu_affinity(host):
    # GPU and ConnectX NIC behind the same PCIe switch (bridge 0000:17:00.0), a second NIC on the other socket.
    host.pci(["0000:00:01.0", "0000:17:00.0", "0000:18:00.0"], "0x10de", "0x2335", "0x030200", numa=0)
    host.nic(
        "ens1f0np0",
        "B8:3F:D2:00:00:01",
        ["0000:00:01.0", "0000:17:00.0", "0000:19:00.0"],
        "mlx5_core",
        numa=0,
        speed=400000,
        mtu=9000,
        vfs=16,
    )
    host.nic("ens9f0", "b8:3f:d2:00:00:02", ["0000:80:01.0", "0000:81:00.0"], "mlx5_core", numa=1, speed=100000)
    host.nic("eno1", "3c:ec:ef:00:00:03", ["0000:00:1c.0", "0000:02:00.0"], "igb", numa=0, speed=1000)
    host.rdma("mlx5_0", "ens1f0np0", gids=ROCE_GIDS)
    host.rdma("rxe0", "eno1", state="1: DOWN", soft=True, rate="unknown")
    host.mkdir("/sys/devices/virtual/net/lo")
    host.link("/sys/class/net/lo", "/sys/devices/virtual/net/lo")
    system = _system(host)
    facts = probe_lib.probe(system, ("gpus", "nics"))
    nics = {n["name"]: n for n in facts["network"]["nics"]}
    assert sorted(nics) == ["eno1", "ens1f0np0", "ens9f0"]
    cx7 = nics["ens1f0np0"]
    assert (cx7["mac"], cx7["driver"], cx7["pci_address"]) == ("b8:3f:d2:00:00:01", "mlx5_core", "0000:19:00.0")
    assert (cx7["speed_mbps"], cx7["mtu"], cx7["numa_node"], cx7["sriov_total_vfs"]) == (400000, 9000, 0, 16)
    assert cx7["rdma"] == [
        {
            "device": "mlx5_0",
            "port": 1,
            "netdev": "ens1f0np0",
            "state": "ACTIVE",
            "link_layer": "Ethernet",
            "rate_gbits": 400.0,
            "soft_roce": False,
            "gids": [
                {"index": index, "gid": gid, "type": kind, "netdev": "ens1f0np0"} for index, gid, kind in ROCE_GIDS
            ],
        }
    ]
    assert nics["eno1"]["rdma"][0]["soft_roce"] is True
    assert nics["eno1"]["rdma"][0]["state"] == "DOWN"
    assert nics["eno1"]["rdma"][0]["rate_gbits"] is None
    relations = {a["nic"]: a["relation"] for a in facts["gpu_nic_affinity"]}
    assert relations == {"ens1f0np0": "same_pcie_switch", "ens9f0": "cross_numa", "eno1": "same_numa_node"}


def test_host_facts(host):
    cpuinfo = "".join(
        f"processor\t: {n}\nmodel name\t: AMD EPYC 9654 96-Core Processor\nphysical id\t: {n // 4}\n"
        f"core id\t\t: {(n % 4) // 2}\n\n"
        for n in range(8)
    )
    host.write("/proc/cpuinfo", cpuinfo)
    host.write(
        "/proc/meminfo", "MemTotal:       1583851520 kB\nHugePages_Total:    1024\nHugepagesize:       2048 kB\n"
    )
    host.write("/proc/sys/kernel/osrelease", "6.12.48+deb13-amd64\n")
    host.write(
        "/etc/os-release",
        'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie\n',
    )
    for node in range(2):
        host.mkdir(f"/sys/devices/system/node/node{node}")
    host.mkdir("/sys/kernel/iommu_groups/0")
    host.write(f"/sys/firmware/efi/efivars/SecureBoot-{probe_lib.EFI_GLOBAL}", b"\x06\x00\x00\x00\x01")
    facts = probe_lib.probe_host(_system(host))
    assert (facts["sockets"], facts["cores"], facts["threads"]) == (2, 4, 8)
    assert facts["memory_mib"] == 1583851520 // 1024
    assert (facts["numa_nodes"], facts["hugepages_total"], facts["hugepage_size_kib"]) == (2, 1024, 2048)
    assert (facts["os_id"], facts["os_version"], facts["kernel"]) == ("debian", "13", "6.12.48+deb13-amd64")
    assert facts["iommu"] is True
    assert facts["secure_boot"] == "enabled"


def test_an_empty_host_reports_unknowns_instead_of_failing(host):
    facts = probe_lib.probe(probe_lib.System(str(host.root), {}))
    assert facts["gpu"]["count"] == 0
    assert facts["host"]["secure_boot"] == "not_efi"
    assert facts["storage"]["disks"] == []
    assert facts["network"]["nics"] == []
