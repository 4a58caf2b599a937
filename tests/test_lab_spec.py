"""Lab declarations: what boots, and the clear errors for what cannot."""

from __future__ import annotations

import pytest

from ironserve.lab.spec import SpecError, derived_mac, lab_from_dict, lab_from_platforms


def _lab(**overrides):
    data = {
        "name": "t",
        "machines": [
            {"name": "a", "nvme": [{"serial": "A-N0", "size_gb": 2}], "hdd": [{"serial": "A-H0", "size_gb": 4}]},
            {"name": "b", "ssh_port": 22222},
        ],
    }
    data.update(overrides)
    return data


def test_defaults_and_derived_identity():
    lab = lab_from_dict(_lab())
    a, b = lab.machines
    assert (a.cpus, a.memory_mb, lab.data_mtu) == (2, 1024, 9000)
    assert a.nvme[0].rotation_rate == 0
    assert a.hdd[0].rotation_rate == 7200
    assert b.ssh_port == 22222
    assert a.ssh_port is None
    assert a.mgmt_mac == derived_mac("t", "a", "mgmt")
    assert len({a.mgmt_mac, a.data_mac, b.mgmt_mac, b.data_mac}) == 4


def test_derived_mac_is_stable_and_locally_administered():
    mac = derived_mac("demo", "gpu-a", "data")
    assert mac == derived_mac("demo", "gpu-a", "data")
    assert mac != derived_mac("other", "gpu-a", "data")
    first_octet = int(mac.split(":")[0], 16)
    assert first_octet & 0b10  # locally administered
    assert not first_octet & 0b01  # unicast


def test_platforms_form_ignores_molecule_keys():
    lab = lab_from_platforms("mol-x", [{"name": "m1", "groups": ["gpu_servers"], "nvme": []}])
    assert lab.name == "mol-x"
    assert lab.machines[0].name == "m1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Bad_Name"}, "lab name must be lowercase"),
        ({"machines": []}, "'machines' must be a non-empty list"),
        ({"machines": [{"name": "a"}, {"name": "a"}]}, "machine name 'a' is declared twice"),
        (
            {
                "machines": [
                    {"name": "a", "nvme": [{"serial": "S1", "size_gb": 1}]},
                    {"name": "b", "hdd": [{"serial": "S1", "size_gb": 1}]},
                ]
            },
            "disk serial 'S1' is used twice",
        ),
        ({"machines": [{"name": "a", "ssh_port": 2200}, {"name": "b", "ssh_port": 2200}]}, "ssh_port 2200 is given"),
        ({"machines": [{"name": "a", "nvme": [{"serial": "S1"}]}]}, "machine a: nvme[0] needs 'serial' and 'size_gb'"),
        ({"machines": [{"name": "a", "nvme": [{"serial": "S 1", "size_gb": 1}]}]}, "nvme[0].serial must be"),
        ({"machines": [{"name": "a", "cpus": 0}]}, "machine a: cpus must be a whole number from 1 to 64"),
        ({"machines": [{"name": "a", "memory_mb": "lots"}]}, "memory_mb must be a whole number"),
        ({"machines": [{"name": "a", "ssh_port": 22}]}, "ssh_port must be a whole number from 1024"),
        ({"data_mtu": 10000}, "data_mtu must be a whole number from 1280 to 9216"),
        ({"machines": [{"name": "a", "hdd": {"serial": "x"}}]}, "hdd must be a list"),
        ({"machines": [{"name": "a", "kind": "docker"}]}, "machine a: kind must be one of qemu, light, got 'docker'"),
        (
            {"machines": [{"name": "a", "kind": "light", "nvme": [{"serial": "S1", "size_gb": 1}]}]},
            "machine a: a light machine has no disks of its own",
        ),
        ({"machines": [{"name": "a", "layer": "Base Layer"}]}, "machine a: layer must be the name of a declared layer"),
    ],
)
def test_bad_declarations_name_the_field(change, message):
    with pytest.raises(SpecError, match=None) as raised:
        lab_from_dict(_lab(**change))
    assert message in str(raised.value)


def test_a_saved_lab_matches_its_declaration_after_a_json_round_trip():
    import json

    from ironserve.lab.lab import same_spec

    lab = lab_from_dict(_lab())
    state = json.loads(json.dumps({"spec": lab.to_dict()}))
    assert same_spec(state, lab)
    assert not same_spec(state, lab_from_dict(_lab(data_mtu=1500)))
