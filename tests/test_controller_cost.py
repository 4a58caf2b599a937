"""The controller-cost benchmark's inventories: more hosts than machines become aliases with their own SSH."""

from __future__ import annotations

import yaml
from bench import controller_cost


def _state(count: int) -> dict:
    return {"machines": [{"name": f"ctl-{i:03d}", "ssh_port": 40000 + i} for i in range(count)]}


def test_up_to_one_host_per_machine_the_machines_themselves(tmp_path):
    hosts = yaml.safe_load((controller_cost._inventory(tmp_path, _state(10), 3) / "hosts.yml").read_text())
    assert sorted(hosts["gpu_servers"]["hosts"]) == ["ctl-000", "ctl-001", "ctl-002"]


def test_beyond_the_machines_each_alias_has_its_own_control_socket(tmp_path):
    hosts = yaml.safe_load((controller_cost._inventory(tmp_path, _state(10), 50) / "hosts.yml").read_text())
    hosts = hosts["gpu_servers"]["hosts"]
    assert len(hosts) == 50
    assert len({h["ansible_control_path_dir"] for h in hosts.values()}) == 50
    ports = [h["ansible_port"] for h in hosts.values()]
    assert sorted(set(ports)) == list(range(40000, 40010))
    assert all(ports.count(port) == 5 for port in set(ports))
