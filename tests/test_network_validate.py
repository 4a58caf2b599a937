"""Both network roles' checks run for real on this machine (read-only: the probe, the plan across hosts, the NIC
selection and each refusal), so a task that cannot even evaluate fails here and not first in the network scenario."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lab_ansible import ansible_module, ansible_playbook

PLAYBOOK = Path(__file__).parent / "fixtures" / "network-validate" / "validate.yml"
LOCAL = ("-c", "local", "-e", "ansible_python_interpreter=python3")


@pytest.fixture(scope="module")
def nic() -> dict:
    [result] = ansible_module("localhost,", "localhost", "ironserve_probe", "sections=nics fact=false", *LOCAL).values()
    nics = result["hw"]["network"]["nics"]
    if not nics:
        pytest.skip("this machine has no physical NIC for the network roles to find")
    return nics[0]


def _run(tmp_path: Path, mgmt_mac: str, data_mac: str) -> str:
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "python3",
        "mgmt_network_mac": mgmt_mac,
        "mgmt_network_address": "10.0.2.15/24",
        "data_network_macs": [data_mac],
        "data_network_subnet": "10.99.0.0/24",
        "data_network_host_index": 11,
    }
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": host}}}))
    result = ansible_playbook(str(inventory), PLAYBOOK, timeout=300)
    return result.stdout + result.stderr


def test_the_management_nic_found_and_a_data_nic_the_host_lacks_named(tmp_path, nic):
    output = _run(tmp_path, nic["mac"].upper(), "52:54:00:00:00:99")
    assert "TASK [data_network : Stop on any problem, listing each one]" in output  # the management plane passed
    assert "data_network_macs lists 52:54:00:00:00:99, which no NIC of this host has (found: " in output
    assert f"{nic['name']} {nic['mac']}" in output


def test_a_management_mac_the_host_lacks_is_named_before_the_data_plane(tmp_path, nic):
    output = _run(tmp_path, "AA:BB:CC:00:00:01", "52:54:00:00:00:99")
    assert "mgmt_network_mac is aa:bb:cc:00:00:01, which no NIC of this host has (found: " in output
    assert "TASK [Data plane checks]" not in output
