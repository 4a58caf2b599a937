"""The facts schema (module_utils/ironserve_target/facts.py) finds what does not match it, and the rules decide on
its reason codes, not on the sentences beside them. (That every probe result matches it is checked on every probe
call the unit tests make: tests/conftest.py.)"""

from __future__ import annotations

import copy

import yaml
from fakehost import FakeHost
from ironserve_target import facts, probe

from ironserve import paths, preflight, storage


def _probed(tmp_path) -> dict:
    host = FakeHost(tmp_path)
    host.virtio_root("vda", "/")
    host.nvme(0, "S64GNE0R600001", 3840)
    host.blkid("vda", 0, "TYPE=ext4\n")
    return probe.probe(host.system())


def test_a_probe_result_matches_and_each_kind_of_difference_is_named(tmp_path):
    hw = _probed(tmp_path)
    assert facts.problems(hw) == []
    broken = copy.deepcopy(hw)
    names = [disk["name"] for disk in broken["storage"]["disks"]]
    nvme, system = (broken["storage"]["disks"][names.index(name)] for name in ("nvme0n1", "vda"))
    del nvme["serial"]
    nvme["colour"] = "blue"
    broken["host"]["iommu"] = "yes"
    system["in_use_codes"][0] = "busy"
    broken["gpu"]["models"].append(7)
    at_nvme, at_system = names.index("nvme0n1"), names.index("vda")
    assert sorted(facts.problems(broken)) == sorted(
        [
            f"storage.disks[{at_nvme}]: 'serial' is missing",
            f"storage.disks[{at_nvme}]: 'colour' is not in the schema",
            "host.iommu: str, the schema says bool",
            f"storage.disks[{at_system}].in_use_codes: unknown code 'busy'",
            "gpu.models[0]: int, the schema says a string",
        ]
    )


def test_a_number_is_not_a_flag_and_a_flag_is_not_a_number(tmp_path):
    hw = _probed(tmp_path)
    hw["host"]["numa_nodes"] = True  # bool is an int to Python, not to the schema
    hw["host"]["virtualised"] = 1
    assert sorted(facts.problems(hw)) == [
        "host.numa_nodes: bool, the schema says int",
        "host.virtualised: int, the schema says bool",
    ]


def test_the_system_disk_is_known_by_its_code_whatever_its_sentence_says(tmp_path):
    hw = _probed(tmp_path)
    system = next(d for d in hw["storage"]["disks"] if d["name"] == "vda")
    assert system["in_use_codes"][0] == facts.SYSTEM_DISK
    assert len(system["in_use_codes"]) == len(system["in_use_reasons"])
    system["in_use_reasons"][0] = "Systemplatte (/, /boot)"  # the sentence is for people
    assert preflight._disk_problems(hw["storage"], {"hot": ["/dev/vda"]}) == [
        "hot_tier_devices names /dev/vda (/dev/vda), the system disk"
    ]
    plan = storage.plan_array(hw, ["/dev/vda"], "hot_tier_devices", 1, {}, True, [])
    assert "hot_tier_devices selects /dev/vda, the system disk; it is never used" in plan["problems"]
    # A record without codes (by hand, or an older probe's) that is in use is never taken for a wipe.
    del system["in_use_codes"]
    assert facts.is_system_disk(system)
    assert not facts.is_system_disk({**system, "in_use": False})


def _probe_tasks(node, where):
    if isinstance(node, dict):
        if "ironserve_probe" in node:
            yield where, node
        for value in node.values():
            yield from _probe_tasks(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from _probe_tasks(item, where)


def test_only_the_preflight_stage_sets_the_fact_and_every_other_probe_is_registered_privately():
    """Eleven roles once re-ran the probe, each replacing the whole ironserve_hw fact: what a later play saw depended
    on which role ran last. Now the preflight role's full probe sets the fact and each other probe registers its own
    variable (its role's prefix, or the stage's in a stage playbook)."""
    found = {}
    for path in [*paths.REPO_ROOT.glob("roles/*/tasks/*.yml"), *paths.REPO_ROOT.glob("playbooks/*.yml")]:
        for where, task in _probe_tasks(yaml.safe_load(path.read_text()), path.relative_to(paths.REPO_ROOT)):
            found[f"{where}: {task['name']}"] = task
    publishing = sorted(name for name, task in found.items() if (task["ironserve_probe"] or {}).get("fact", True))
    assert publishing == ["roles/preflight/tasks/probe.yml: Probe GPUs, disks, NICs and the host (read-only)"]
    for name, task in found.items():
        if name in publishing:
            continue
        folder = name.split("/")
        prefix = f"_{folder[1]}_" if folder[0] == "roles" else f"_{folder[1].removesuffix('.yml: ' + task['name'])}_"
        assert task.get("register", "").startswith(prefix), name
    assert len(found) >= 14


# Ansible's own facts, as the roles and filters read them: the "min" subset (os_family, kernel, distribution_release)
# and "network" (interfaces and their addresses, default_ipv4). docs/architecture.md says why no more.
ANSIBLE_FACT_SUBSET = ["network"]


def test_every_play_that_gathers_ansible_facts_gathers_only_the_network_subset():
    """The default ("all") also read every mount and block device on each play, facts no role reads."""
    gathering = {}
    for path in sorted(paths.REPO_ROOT.glob("playbooks/*.yml")):
        for play in yaml.safe_load(path.read_text()):
            if "hosts" in play and play.get("gather_facts", True):
                gathering[f"{path.name}: {play['name']}"] = play.get("gather_subset")
    assert len(gathering) >= 10
    assert {name: subset for name, subset in gathering.items() if subset != ANSIBLE_FACT_SUBSET} == {}


def test_no_role_reads_a_fact_outside_the_gathered_subsets():
    """The facts of the hardware and virtual subsets (mounts, devices, memory, processors, virtualization) would be
    missing now: a role that reads one must fail this test rather than a site's run."""
    outside = (
        "mounts",
        "devices",
        "memtotal_mb",
        "memfree_mb",
        "processor",
        "virtualization",
        "lvm",
        "product_",
        "system_vendor",
        "bios_",
        "board_",
        "memory_mb",
        "swaptotal_mb",
        "uptime_seconds",
        "device_links",
    )
    readers = []
    for path in sorted(paths.REPO_ROOT.glob("*/**/*")):
        if path.suffix not in {".yml", ".j2", ".py"} or ".venv" in path.parts or "tests" in path.parts:
            continue
        text = path.read_text(errors="replace")
        for name in outside:
            if f"ansible_facts['{name}" in text or f"ansible_facts.{name}" in text or f"ansible_{name}" in text:
                readers.append(f"{path.relative_to(paths.REPO_ROOT)}: {name}")
    assert readers == []
