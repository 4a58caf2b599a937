"""Network plans: addresses from a subnet and an index, every cross-host problem at once, and the renderings."""

from __future__ import annotations

import copy

import pytest

from ironserve import network, paths

GOOD = {
    "gpu01": {
        "mgmt_mac": "3c:ec:ef:00:00:01",
        "mgmt_address": "192.0.2.11/24",
        "data_macs": ["b8:3f:d2:00:00:01"],
        "data_subnet": "198.51.100.0/24",
        "data_index": 11,
        "data_mtu": 9000,
    },
    "gpu02": {
        "mgmt_mac": "3c:ec:ef:00:00:02",
        "mgmt_address": "192.0.2.12/24",
        "data_macs": ["b8:3f:d2:00:00:02"],
        "data_subnet": "198.51.100.0/24",
        "data_index": 12,
        "data_mtu": 9000,
    },
}


def _hosts(**changes: dict) -> dict:
    hosts = copy.deepcopy(GOOD)
    for host, values in changes.items():
        hosts[host].update(values)
    return hosts


def test_addresses_come_from_the_subnet_and_the_host_index():
    assert network.host_address("198.51.100.0/24", 11) == "198.51.100.11/24"
    assert network.host_address("10.20.0.0/16", 300) == "10.20.1.44/16"
    assert network.plan_problems(GOOD) == []


def test_every_problem_is_listed_at_once_naming_the_variable():
    found = network.plan_problems(
        _hosts(
            gpu01={"mgmt_address": "198.51.100.5/24", "data_mtu": 9600, "data_macs": ["3c:ec:ef:00:00:01"]},
            gpu02={"data_index": 11, "mgmt_mtu": 1000},
        )
    )
    assert found == [
        "gpu01: data_network_macs lists 3c:ec:ef:00:00:01, the management NIC; keep the planes apart",
        "gpu01: data_network_mtu is 9600; use 1280 to 9216 (9000 for jumbo frames)",
        "gpu02: mgmt_network_mtu is 1000; use 1280 to 9216 (9000 for jumbo frames)",
        "data address 198.51.100.11 is given to both gpu01 and gpu02",
        "the gpu01 data network 198.51.100.0/24 overlaps the gpu01 management network 198.51.100.0/24; the "
        "management and data planes need separate subnets",
    ]


def test_addresses_outside_their_subnet_and_bad_indexes_are_refused():
    found = network.plan_problems(
        _hosts(
            gpu01={"data_address": "203.0.113.7/24"},
            gpu02={"data_index": 255},
        )
    )
    assert found == [
        "gpu01: data_network_address 203.0.113.7/24 is outside its subnet 198.51.100.0/24",
        "gpu02: data_network_host_index 255 does not fit 198.51.100.0/24 (1 to 254)",
    ]
    assert network.plan_problems(_hosts(gpu01={"data_subnet": "198.51.100.7/24"})) == [
        "gpu01: data_network_subnet 198.51.100.7/24 has host bits set; did you mean 198.51.100.0/24?"
    ]
    assert network.plan_problems(_hosts(gpu01={"mgmt_address": "192.0.2.300/24"})) == [
        "gpu01: mgmt_network_address is '192.0.2.300/24', not an address with a prefix like 198.51.100.11/24"
    ]


def test_hosts_on_different_data_subnets_and_bond_rules():
    found = network.plan_problems(
        _hosts(
            gpu01={"data_subnet": "198.51.100.0/25"},
            gpu02={"data_macs": ["b8:3f:d2:00:00:02", "b8:3f:d2:00:00:03"]},
        )
    )
    assert found == [
        "gpu02: data_network_macs lists 2 NICs; set data_network_bond_mode (802.3ad) to bond them, or list one",
        "the gpu01 data network 198.51.100.0/25 differs from the gpu02 data network 198.51.100.0/24; every host of "
        "the data plane needs the same subnet",
    ]
    assert network.plan_problems(_hosts(gpu01={"data_pci": ["0000:19:00.0"]})) == [
        "gpu01: data_network_macs lists 2 NICs; set data_network_bond_mode (802.3ad) to bond them, or list one"
    ]
    assert network.plan_problems(_hosts(gpu01={"data_bond_mode": "802.3ad"})) == [
        "gpu01: data_network_bond_mode is set, but a bond needs two or more data_network_macs"
    ]


def test_networkd_plain_nic_leaves_the_qdisc_to_the_qos_service():
    files = network.render_networkd(
        "mgmt",
        {
            "macs": ["3c:ec:ef:00:00:01"],
            "mtu": 1500,
            "addresses": ["192.0.2.11/24"],
            "gateway": "192.0.2.1",
            "dns": ["192.0.2.53"],
        },
    )
    assert list(files) == ["10-ironserve-mgmt.network"]
    text = files["10-ironserve-mgmt.network"]
    assert "[Match]\nPermanentMACAddress=3c:ec:ef:00:00:01\n" in text
    assert "Address=192.0.2.11/24\nGateway=192.0.2.1\nDNS=192.0.2.53\n" in text
    # networkd cannot change an HTB root in place: a reconfigure would fail the link and drop its address.
    assert "HierarchyTokenBucket" not in text


def test_networkd_bond_with_a_vlan_carries_the_mtu_on_every_layer():
    files = network.render_networkd(
        "data",
        {
            "macs": ["b8:3f:d2:00:00:01", "b8:3f:d2:00:00:02"],
            "bond_mode": "802.3ad",
            "bond_name": "bond-data",
            "vlan": 100,
            "mtu": 9000,
            "addresses": ["198.51.100.11/24"],
        },
    )
    assert sorted(files) == [
        "10-ironserve-data-bond.netdev",
        "10-ironserve-data-member0.network",
        "10-ironserve-data-member1.network",
        "10-ironserve-data-vlan.netdev",
        "10-ironserve-data-vlan.network",
        "10-ironserve-data.network",
    ]
    assert all("MTUBytes=9000" in text for text in files.values())
    assert "Mode=802.3ad\n" in files["10-ironserve-data-bond.netdev"]
    assert "Bond=bond-data" in files["10-ironserve-data-member1.network"]
    assert "[Match]\nName=bond-data\n" in files["10-ironserve-data.network"]
    assert "VLAN=data.100" in files["10-ironserve-data.network"]
    assert "Address=" not in files["10-ironserve-data.network"]
    assert "[VLAN]\nId=100\n" in files["10-ironserve-data-vlan.netdev"]
    assert "Address=198.51.100.11/24" in files["10-ironserve-data-vlan.network"]


def test_netplan_rendering_of_the_same_plane():
    document = network.render_netplan(
        "data",
        {
            "macs": ["b8:3f:d2:00:00:01", "b8:3f:d2:00:00:02"],
            "bond_mode": "802.3ad",
            "vlan": 100,
            "mtu": 9000,
            "addresses": ["198.51.100.11/24"],
        },
    )["network"]
    assert document["ethernets"] == {
        "data0": {"match": {"macaddress": "b8:3f:d2:00:00:01"}, "mtu": 9000},
        "data1": {"match": {"macaddress": "b8:3f:d2:00:00:02"}, "mtu": 9000},
    }
    assert document["bonds"]["bond-data"]["parameters"]["mode"] == "802.3ad"
    assert document["bonds"]["bond-data"]["mtu"] == 9000
    assert document["vlans"]["data.100"] == {
        "id": 100,
        "link": "bond-data",
        "mtu": 9000,
        "link-local": [],
        "accept-ra": False,
        "addresses": ["198.51.100.11/24"],
    }


def test_the_roce_v2_gid_of_the_data_address_is_chosen():
    from test_probe_nics import ROCE_GIDS

    devices = [
        {
            "device": "mlx5_0",
            "gids": [{"index": i, "gid": gid, "type": kind, "netdev": "ens1f0np0"} for i, gid, kind in ROCE_GIDS],
        }
    ]
    assert network.roce_v2_gid(devices, "198.51.100.11/24") == {
        "device": "mlx5_0",
        "port": 1,
        "index": 3,
        "netdev": "ens1f0np0",
    }
    assert network.roce_v2_gid(devices, "198.51.100.12") is None


def test_files_per_renderer():
    data = {"macs": ["3c:ec:ef:00:00:01"], "addresses": ["192.0.2.11/24"]}
    assert list(network.render_files("mgmt", data, "networkd")) == ["/etc/systemd/network/10-ironserve-mgmt.network"]
    netplan = network.render_files("mgmt", data, "netplan")
    assert list(netplan) == ["/etc/netplan/60-ironserve-mgmt.yaml"]
    assert "macaddress: 3c:ec:ef:00:00:01" in netplan["/etc/netplan/60-ironserve-mgmt.yaml"]


# ib_write_bw 6.x on a ConnectX-7 pair (format as printed; figures illustrative).
IB_WRITE_BW = """
---------------------------------------------------------------------------------------
                    RDMA_Write BW Test
 Dual-port       : OFF		Device         : mlx5_0
 Number of qps   : 1		Transport type : IB
---------------------------------------------------------------------------------------
 #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]
 65536      2210000          0.00               386.21   		   0.736640
---------------------------------------------------------------------------------------
"""


# ib_write_bw's default report as perftest prints it (MiB/sec), with the CPU-frequency warning it can print
# between header and result; the figures are those of a slow soft-RoCE pair under TCG.
IB_WRITE_BW_SOFT_ROCE = """
 #bytes     #iterations    BW peak[MiB/sec]    BW average[MiB/sec]   MsgRate[Mpps]
Conflicting CPU frequency values detected: 1846.550000 != 2596.396000. CPU Frequency is not max.
 65536      12             0.00               0.31   		   0.000005
---------------------------------------------------------------------------------------
"""


def test_the_average_bandwidth_is_read_from_ib_write_bw():
    assert network.perftest_bandwidth(IB_WRITE_BW) == 386.21
    assert network.perftest_bandwidth("Couldn't connect to 198.51.100.12:18515") is None


def test_a_slow_working_pair_never_rounds_to_zero():
    # 0.31 MiB/s is 0.0026 Gb/s: --report_gbits would have printed 0.00.
    assert network.perftest_result(IB_WRITE_BW_SOFT_ROCE.replace("MiB/sec", "furlongs")) is None
    assert network.perftest_result(IB_WRITE_BW_SOFT_ROCE) == {"bytes": 65536, "iterations": 12, "gbits": 0.00260047}


def test_the_default_floor_comes_from_the_probed_port():
    devices = [
        {"device": "mlx5_0", "soft_roce": False, "rate_gbits": 400.0},
        {"device": "rxe0", "soft_roce": True, "rate_gbits": 10.0},
        {"device": "mlx5_1", "soft_roce": False, "rate_gbits": None},
    ]
    assert network.bandwidth_floor(devices, "mlx5_0") == 100.0
    assert network.bandwidth_floor(devices, "rxe0") == network.SOFT_ROCE_FLOOR_GBITS
    assert network.bandwidth_floor(devices, "mlx5_1") == 0.0
    assert network.bandwidth_floor(devices, "unknown0") == 0.0
    assert network.min_gbits_setting("auto") is None
    assert network.min_gbits_setting(2) == 2.0
    for bad in ("fast", -1, True, None):
        with pytest.raises(ValueError, match="network_check_min_gbits must be 'auto'"):
            network.min_gbits_setting(bad)


def test_a_pair_that_moved_no_data_fails_whatever_the_floor():
    hosts = {
        "a": {"ip": "198.51.100.11", "mtu": 9000, "device": "rxe0", "floor_gbits": 0.01},
        "b": {"ip": "198.51.100.12"},
    }
    stalled = IB_WRITE_BW_SOFT_ROCE.replace(
        "65536      12             0.00               0.31", "65536      0              0.00               0.00"
    )
    for floor in ("auto", 0):
        report = network.check_report(
            hosts, {}, [{"item": {"client": "a", "server": "b"}, "rc": 0, "stdout": stalled}], floor
        )
        assert report["bandwidth"][0]["ok"] is False
        assert "moved no data" in report["problems"][0]
    slow = [{"item": {"client": "a", "server": "b"}, "rc": 0, "stdout": IB_WRITE_BW_SOFT_ROCE}]
    assert network.check_report(hosts, {}, slow)["problems"] == [
        "RDMA a -> b (198.51.100.12): 0.00260047 Gb/s is below the floor derived from the port (0.01 Gb/s)"
    ]
    assert network.check_report(hosts, {}, slow, min_gbits=0.001)["problems"] == []


def test_the_check_report_names_both_hosts_of_a_broken_path():
    hosts = {
        "a": {"ip": "198.51.100.11", "mtu": 9000, "device": "rxe0"},
        "b": {"ip": "198.51.100.12", "mtu": 9000, "device": "rxe0"},
        "c": {"ip": "198.51.100.13", "mtu": 9000, "device": "rxe0"},
    }
    assert network.host_pairs(["c", "a", "b"]) == [
        {"client": "a", "server": "b"},
        {"client": "a", "server": "c"},
        {"client": "b", "server": "c"},
    ]
    good = "3 packets transmitted, 3 received, 0% packet loss, time 2003ms\nrtt min/avg/max/mdev = 0.4/0.5/0.6/0.1 ms"
    bad = "3 packets transmitted, 0 received, 100% packet loss, time 2040ms"
    pings = {"a": [{"item": "b", "rc": 0, "stdout": good}], "b": [{"item": "a", "rc": 1, "stdout": bad}]}
    bandwidth = [
        {"item": {"client": "a", "server": "b"}, "rc": 0, "stdout": IB_WRITE_BW},
        {"item": {"client": "a", "server": "c"}, "rc": 1, "stdout": "", "stderr": "Couldn't connect to 198.51.100.13"},
    ]
    report = network.check_report(hosts, pings, bandwidth, min_gbits=0)
    assert report["pings"][0] == {
        "from": "a",
        "to": "b",
        "address": "198.51.100.12",
        "bytes": 8972,
        "ok": True,
        "summary": "3 packets transmitted, 3 received, 0% packet loss, time 2003ms",
    }
    assert report["bandwidth"][0]["gbits"] == 386.21
    assert report["problems"] == [
        "b -> a (198.51.100.11): 8972-byte pings with don't-fragment got no answer (3 packets transmitted, 0 "
        "received, 100% packet loss, time 2040ms); check the MTU of every NIC, bond, VLAN and switch port on the path",
        "RDMA a -> c (198.51.100.13): Couldn't connect to 198.51.100.13",
    ]
    assert network.check_report(hosts, {}, bandwidth[:1], min_gbits=400)["problems"] == [
        "RDMA a -> b (198.51.100.12): 386.21 Gb/s is below network_check_min_gbits (400.0 Gb/s)"
    ]


def test_the_management_address_is_found_by_mac_in_the_facts():
    facts = {
        "interfaces": ["lo", "enp0s2", "data-100"],
        "enp0s2": {"macaddress": "52:54:00:5A:00:01", "ipv4": {"address": "10.0.2.15"}},
        "data_100": {"macaddress": "52:54:00:6e:10:01", "ipv4": {"address": "10.99.0.11"}},
        "default_ipv4": {"address": "192.0.2.11"},
    }
    assert network.address_of_mac(facts, "52:54:00:5a:00:01") == "10.0.2.15"
    assert network.address_of_mac(facts, "52:54:00:6e:10:01") == "10.99.0.11"
    assert network.address_of_mac(facts, "") == "192.0.2.11"
    assert network.address_of_mac({"interfaces": []}, "52:54:00:5a:00:01") == ""


def test_data_address_is_the_explicit_one_or_the_subnets_at_the_index():
    assert network.data_address({"data_network_address": "10.99.0.50/24", "data_network_subnet": "10.99.0.0/24"}) == (
        "10.99.0.50/24"
    )
    assert network.data_address({"data_network_subnet": "10.99.0.0/24", "data_network_host_index": 12}) == (
        "10.99.0.12/24"
    )
    assert network.data_address({"data_network_subnet": "10.99.0.0/24"}) == ""
    assert network.data_address({}) == ""


def test_a_plane_takes_its_nics_by_mac_then_by_pci_address_and_names_what_the_host_lacks():
    nics = [
        {"name": "eno1", "mac": "3c:ec:ef:00:00:03", "pci_address": "0000:02:00.0"},
        {"name": "ens1f0", "mac": "b8:3f:d2:00:00:01", "pci_address": "0000:19:00.0"},
        {"name": "ens1f1", "mac": "b8:3f:d2:00:00:02", "pci_address": "0000:19:00.1"},
    ]
    chosen = network.select_nics(nics, ["B8:3F:D2:00:00:01", "52:54:00:00:00:99"], ["0000:19:00.0", "0000:19:00.1"])
    assert [nic["name"] for nic in chosen["nics"]] == ["ens1f0", "ens1f1"]  # ens1f0 once, though named both ways
    assert (chosen["missing_macs"], chosen["missing_pci"]) == (["52:54:00:00:00:99"], [])
    assert network.missing_nics_problem("data_network_macs", chosen["missing_macs"], nics) == [
        "data_network_macs lists 52:54:00:00:00:99, which no NIC of this host has "
        "(found: eno1 3c:ec:ef:00:00:03, ens1f0 b8:3f:d2:00:00:01, ens1f1 b8:3f:d2:00:00:02)"
    ]
    assert network.missing_nics_problem("mgmt_network_mac", ["aa:bb:cc:dd:ee:ff"], [])[0].startswith(
        "mgmt_network_mac is aa:bb:cc:dd:ee:ff, which no NIC of this host has (found: none)"
    )
    assert network.missing_nics_problem("data_network_macs", [], nics) == []


def test_both_network_roles_check_the_plan_and_the_nics_with_the_one_rule():
    hostvars = {
        "gpu-a": {"data_network_subnet": "10.99.0.0/24", "data_network_host_index": 11},
        "gpu-b": {"data_network_subnet": "10.99.0.0/24", "data_network_host_index": 11},
    }
    assert network.play_problems(["gpu-a", "gpu-b"], hostvars) == [
        "data address 10.99.0.11 is given to both gpu-a and gpu-b"
    ]
    for role in ("mgmt_network", "data_network"):
        tasks = (paths.REPO_ROOT / "roles" / role / "tasks" / "validate.yml").read_text()
        assert "ironserve_network_plan_problems(hostvars)" in tasks
        assert "ironserve_select_nics" in tasks
        assert "ironserve_missing_nics_problem" in tasks
        assert "selectattr('mac'" not in tasks
