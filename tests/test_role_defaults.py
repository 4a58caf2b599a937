"""Each default lives in its role (defaults/main.yml); the Python rules that read other hosts' variables take the
defaults from there instead of restating them, and the tier roles and preflight check mount paths with one rule."""

from __future__ import annotations

import pytest
import yaml

from ironserve import network, paths, preflight, role_defaults, storage


def _role_defaults(role: str) -> dict:
    return yaml.safe_load((paths.REPO_ROOT / "roles" / role / "defaults" / "main.yml").read_text())


def test_a_default_is_its_roles_and_an_inventory_value_wins():
    assert role_defaults.default("data_network_mtu") == _role_defaults("data_network")["data_network_mtu"]
    assert role_defaults.resolved({"data_network_mtu": 4200}, "data_network_mtu") == 4200
    assert role_defaults.resolved({"data_network_mtu": None}, "data_network_mtu") == 9000
    with pytest.raises(role_defaults.RoleDefaultError, match="no role has a default for data_network_colour"):
        role_defaults.default("data_network_colour")


def test_the_network_declaration_of_a_host_that_sets_nothing_is_its_roles_defaults():
    mgmt, data = _role_defaults("mgmt_network"), _role_defaults("data_network")
    declared = network.declaration({})
    assert (declared["mgmt_mtu"], declared["mgmt_vlan"]) == (mgmt["mgmt_network_mtu"], mgmt["mgmt_network_vlan"])
    assert (declared["data_mtu"], declared["data_vlan"]) == (data["data_network_mtu"], data["data_network_vlan"])
    assert declared["data_index"] == data["data_network_host_index"] == 0
    assert declared["mgmt_dhcp"] is (mgmt["mgmt_network_mode"] != "static")
    # The index's default (0) is "not given", in the address rule as in the plan's problems.
    assert network.data_address({"data_network_subnet": "10.99.0.0/24", "data_network_host_index": 0}) == ""
    problems = network.plan_problems({"gpu-a": network.declaration({"data_network_subnet": "10.99.0.0/24"})})
    assert any("data_network_host_index must be too" in p for p in problems)


def test_the_preflight_declaration_takes_each_variable_by_its_name_and_the_roles_defaults():
    declared = preflight.declaration({"hot_tier_devices": ["S1"], "ironserve_image_build": "false"})
    assert declared["tiers"] == {"hot": ["S1"], "warm": _role_defaults("warm_tier")["warm_tier_devices"]}
    assert declared["mounts"] == {
        "hot_tier_mount_path": _role_defaults("hot_tier")["hot_tier_mount_path"],
        "warm_tier_mount_path": _role_defaults("warm_tier")["warm_tier_mount_path"],
    }
    assert (declared["profile"], declared["image_build"]) == ("realtime", False)
    assert preflight.declaration({"ironserve_image_build": "yes"})["image_build"] is True
    assert (declared["mgmt_mac"], declared["data_macs"]) == (None, [])


@pytest.mark.parametrize("path", ["/", "srv/models", "/etc", "/var", "/boot", "/usr"])
def test_a_tier_is_never_mounted_over_the_system(path):
    [problem] = storage.mount_path_problems({"hot_tier_mount_path": path})
    assert problem.startswith(f"hot_tier_mount_path is '{path}'")


def test_one_mount_path_rule_for_the_roles_and_preflight():
    plan = (paths.REPO_ROOT / "roles" / "tier_plan" / "tasks" / "main.yml").read_text()
    assert "ironserve_mount_path_problems" in plan
    assert "match('^/.+')" not in plan
    assert (
        storage.mount_path_problems({"hot_tier_mount_path": "/srv/models", "warm_tier_mount_path": "/srv/warm"}) == []
    )


def test_installed_on_its_own_the_package_reads_the_defaults_of_the_project_ansible_runs(tmp_path, monkeypatch):
    # An AWX execution environment holds the package without the roles; Ansible runs in the project's folder.
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "site-packages")
    project = tmp_path / "project"
    (project / "roles" / "data_network" / "defaults").mkdir(parents=True)
    (project / "roles" / "data_network" / "defaults" / "main.yml").write_text("data_network_mtu: 4200\n")
    monkeypatch.chdir(project)
    role_defaults._defaults.cache_clear()
    try:
        assert role_defaults.resolved({}, "data_network_mtu") == 4200
        with pytest.raises(role_defaults.RoleDefaultError, match=r"data_network_vlan \(.*project/roles\)"):
            role_defaults.default("data_network_vlan")
    finally:
        role_defaults._defaults.cache_clear()


def test_a_tier_mount_path_left_empty_is_refused():
    assert storage.mount_path_problems({"hot_tier_mount_path": ""}) == [
        "hot_tier_mount_path is empty; set the folder to mount the tier at, like /srv/models"
    ]
    assert storage.mount_path_problems({"warm_tier_mount_path": None})[0].startswith("warm_tier_mount_path is empty")
