"""The probe's NIC section: links, RDMA devices and GIDs, and each GPU's distance to each NIC."""

from __future__ import annotations

import pytest
from fakehost import FakeHost
from ironserve_target import probe


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path)


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
    system = host.system()
    facts = probe.probe(system, ("gpus", "nics"))
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
