"""The cold tier's nftables table as a site gets it (the role's own template, rendered by Ansible on this machine,
connecting nowhere), and the subnet it is built from."""

from __future__ import annotations

from pathlib import Path

import pytest
from role_templates import nft_check_problem, render_nft_table

from ironserve import network

ROLE = Path(__file__).resolve().parents[1] / "roles" / "cold_tier"
FACTS = {
    "interfaces": ["lo", "eno1", "eno2"],
    "eno1": {"ipv4": {"address": "192.0.2.11", "prefix": "24"}},
    "eno2": {
        "ipv4": {"address": "198.51.100.11", "prefix": "26"},
        "ipv4_secondaries": [{"address": "203.0.113.5", "prefix": "28"}],
    },
}


def test_the_subnet_is_the_one_of_the_interface_that_carries_the_address():
    assert network.subnet_of_address(FACTS, "192.0.2.11") == "192.0.2.0/24"
    assert network.subnet_of_address(FACTS, "198.51.100.11") == "198.51.100.0/26"
    assert network.subnet_of_address(FACTS, "203.0.113.5") == "203.0.113.0/28"
    assert network.subnet_of_address(FACTS, "192.0.2.99") == ""
    assert network.subnet_of_address(FACTS, "") == ""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("cold-tier")
    return render_nft_table(
        folder,
        ROLE / "templates" / "firewall.nft.j2",
        "cold_tier",
        {"_cold_tier_subnet": "192.0.2.0/24"},
        (ROLE / "defaults/main.yml", ROLE / "vars/Debian.yml"),
    )


def test_seaweedfs_ports_only_from_the_management_subnet(rendered):
    lines = [line.strip() for line in rendered.splitlines()]
    assert "elements = { 8333, 18333, 9333, 19333, 8080, 18080, 8888, 18888 }" in lines
    assert "type filter hook input priority filter; policy accept;" in lines  # refusals only
    assert 'iif "lo" accept' in lines
    drop = "tcp dport @seaweedfs_ports ip saddr != 192.0.2.0/24 counter drop"
    assert f'{drop} comment "seaweedfs-off-the-management-network"' in lines
    assert "delete table inet ironserve_cold_tier" in lines
    assert "flush ruleset" not in rendered
    assert not any(" 22" in line for line in lines if not line.startswith("#"))


def test_the_table_is_valid_nftables(rendered, tmp_path):
    assert nft_check_problem(rendered, tmp_path) is None
