"""Hardware the table does not list: real nvidia-smi captures (tests/fixtures/nvidia-smi/captures/SOURCES.md),
NVIDIA's own device lists from the driver packages, chip families by device id, pci.ids names, AMD dies and MIG,
and generated sysfs trees with random ids, where every rule must answer with a clear problem, never raise."""

from __future__ import annotations

import importlib.util
import itertools
import random
import re
from pathlib import Path

import pytest
from fakehost import FakeHost
from ironserve_target import gpu_ids, nvidia_devices
from ironserve_target import probe as probe_lib

from ironserve import driver_policy, nvidia_lists, paths, planner, preflight
from ironserve.bundle.build import bundle_lock

CAPTURES = Path(__file__).parent / "fixtures/nvidia-smi/captures"
NV, AMD = gpu_ids.NVIDIA_VENDOR, gpu_ids.AMD_VENDOR


def _probe_gpus(host: FakeHost) -> dict:
    return probe_lib.probe_gpus(probe_lib.System(str(host.root), host.commands))


def _host_with_capture(tmp_path: Path, capture: str) -> tuple[FakeHost, str]:
    """A host whose PCI bus has the capture's GPUs (address and device id from the XML) and whose nvidia-smi
    prints the capture."""
    host = FakeHost(tmp_path)
    xml = (CAPTURES / capture).read_text()
    for bus_id, device in re.findall(r'<gpu id="([0-9A-Fa-f:.]+)">.*?<pci_device_id>([0-9A-F]{4})10DE<', xml, re.S):
        host.pci([bus_id[-12:].lower()], NV, "0x" + device.lower(), "0x030200", numa=0, driver="nvidia")
    host.commands["nvidia-smi -q -x"] = (0, xml)
    return host, xml


@pytest.mark.parametrize(
    ("capture", "count", "model", "architecture", "memory_gib", "flavour_from_debian", "branch_problem"),
    [
        # Turing GeForce, not in the table: NVIDIA's list names it, its family places it, nvidia-smi sizes it.
        ("rtx-2080-win.xml", 1, "NVIDIA GeForce RTX 2080", "turing", 8.0, "proprietary", None),
        # Ampere GA106 laptop part, not in the table.
        ("rtx-3060.xml", 1, "NVIDIA GeForce RTX 3060 Laptop GPU", "ampere-ga10x", 6.0, "proprietary", None),
        # Kepler: no architecture of the table; NVIDIA's legacy list says branch 470 is its last.
        ("nvidia_smi_out_of_order.xml", 4, "Tesla K80", "kepler", 11.2, "proprietary", "branch 470 at the newest"),
        # Known SKUs keep the table's name; nvidia-smi's memory wins.
        ("tesla-p100.xml", 1, "Tesla P100 PCIe 16GB", "pascal", 16.0, "proprietary", None),
        ("rtx-4090-driver-535.xml", 1, "GeForce RTX 4090", "ada", 24.0, "proprietary", None),
    ],
)
def test_real_captures_are_described_and_planned_without_raising(
    tmp_path, capture, count, model, architecture, memory_gib, flavour_from_debian, branch_problem
):
    host, _ = _host_with_capture(tmp_path, capture)
    gpu = _probe_gpus(host)
    assert gpu["count"] == count
    first = gpu["gpus"][0]
    assert (first["model"], first["architecture"], first["memory_gib"]) == (model, architecture, memory_gib)
    assert first["known"] is True
    assert first["product_name"].startswith(("NVIDIA", "Tesla"))
    plan = driver_policy.driver_plan(gpu, "distribution", 550)
    assert plan["flavour"] == flavour_from_debian
    problems = " ".join(plan["problems"])
    assert (branch_problem in problems) if branch_problem else plan["problems"] == [], problems
    # The planner answers every one: a plan or a reason.
    planned = planner.plan_for_host(gpu)
    assert "error" in planned or planned["checkpoint"], planned


def test_without_the_driver_the_names_come_from_nvidias_lists_and_the_memory_stays_unknown(tmp_path):
    host = FakeHost(tmp_path)
    host.pci(["0000:01:00.0"], NV, "0x1e87", "0x030000")  # RTX 2080, not in the table
    gpu = _probe_gpus(host)["gpus"][0]
    assert (gpu["model"], gpu["name_source"], gpu["architecture_source"]) == (
        "NVIDIA GeForce RTX 2080",
        "nvidia list",
        "device id range",
    )
    assert (gpu["open_kernel_module"], gpu["memory_gib"]) == ("supported", None)
    assert "memory of NVIDIA GeForce RTX 2080" in planner.plan_for_host({"gpus": [gpu]})["error"]


def test_a_device_no_list_knows_is_named_from_the_hosts_pci_ids(tmp_path):
    host = FakeHost(tmp_path)
    host.pci(["0000:01:00.0"], NV, "0x2d83", "0x030200")  # in GB20x's range, newer than NVIDIA's 550 lists
    host.pci(["0000:02:00.0"], NV, "0x3a01", "0x030200")  # in no family's range
    host.write(
        "/usr/share/misc/pci.ids",
        "# pci.ids excerpt\n10de  NVIDIA Corporation\n\t2d83  GB206 [GeForce RTX 5060 Ti]\n"
        "\t\t10de 0001  subsystem line\n\t3a01  GX999 [Future GPU]\n1002  Advanced Micro Devices, Inc. [AMD/ATI]\n",
    )
    system = probe_lib.System(str(host.root), host.commands)
    first, second = probe_lib.probe_gpus(system)["gpus"]
    assert (first["model"], first["architecture"], first["name_source"]) == (
        "GB206 [GeForce RTX 5060 Ti]",
        "blackwell-gb20x",
        "pci.ids",
    )
    assert first["open_kernel_module"] == "required"
    assert (second["model"], second["architecture"], second["known"]) == ("GX999 [Future GPU]", None, False)
    assert any("GX999 [Future GPU] (0x10de:0x3a01) is not in the hardware rules" in u for u in system.unknown)
    # One problem, naming the device and the fix that works (no flavour or branch setting can help here).
    plan = driver_policy.driver_plan({"gpus": [second]}, "cuda_repo", 580, "open")
    assert plan["problems"] == [
        "GX999 [Future GPU] (nvidia device 0x3a01) at 0000:02:00.0 is in neither NVIDIA's device lists of driver "
        "550.163.01 nor a chip family the hardware rules know, so they cannot tell which driver flavour and branch "
        "drive it: add it to module_utils/ironserve_target/gpu_ids.py (_MODELS, or its family to "
        "NVIDIA_FAMILY_RANGES), or regenerate module_utils/ironserve_target/nvidia_devices.py from a newer driver's "
        "packages (tools/nvidia_device_list.py)"
    ]


def test_a_legacy_gpu_is_named_from_nvidias_legacy_list_and_refused_with_its_last_branch(tmp_path):
    host = FakeHost(tmp_path)
    host.pci(["0000:01:00.0"], NV, "0x06c0", "0x030000")  # GeForce GTX 480 (Fermi): branch 390 at the newest
    gpu = _probe_gpus(host)
    assert (gpu["gpus"][0]["model"], gpu["gpus"][0]["name_source"]) == ("GeForce GTX 480", "nvidia list")
    plan = driver_policy.driver_plan(gpu, "distribution", 550)
    assert plan["flavour"] == "proprietary"
    assert plan["problems"] == [
        "nvidia_driver_source: GeForce GTX 480 (a legacy generation) is driven by branch 390 at the newest, not 550; "
        "the distribution's driver is branch 550: set nvidia_driver_source: cuda_repo for another"
    ]


def test_amd_dies_are_gpus_of_their_own_and_unknown_amd_accelerators_are_listed(tmp_path):
    host = FakeHost(tmp_path)
    for index in range(2):  # one MI250X: two dies, two PCI devices
        host.pci([f"0000:{0x50 + index:02x}:00.0"], AMD, "0x740c", "0x038000")
    host.pci(["0000:60:00.0"], AMD, "0x738c", "0x038000")  # MI100: not in the table
    host.pci(["0000:00:08.0"], AMD, "0x1638", "0x030000")  # an APU's graphics: not an accelerator
    gpus = _probe_gpus(host)["gpus"]
    assert [g["device_id"] for g in gpus] == ["0x740c", "0x740c", "0x738c"]
    assert [g["memory_gib"] for g in gpus[:2]] == [64, 64]
    assert (gpus[2]["known"], gpus[2]["model"]) == (False, "unknown amd device 0x738c")
    problems = preflight.problems({"gpu": {"gpus": gpus}}, {"profile": "batch", "gpu_count": 3})
    assert any("unknown amd device 0x738c" in p for p in problems), problems


def test_rocm_smi_names_and_sizes_each_amd_gpu_by_its_address(tmp_path):
    # telegraf's real capture of 4 x MI100 (rocm-smi 6.0.2, more flags than the probe's; the keys it reads match),
    # whose PCI Bus ids are upper case; a fifth AMD accelerator that rocm-smi does not list keeps an unknown memory.
    capture = (CAPTURES / "mi100_rocm602.json").read_text()
    host = FakeHost(tmp_path)
    for card in ("0000:83:00.0", "0000:a3:00.0", "0000:c3:00.0", "0000:e3:00.0", "0000:f0:00.0"):
        host.pci([card], AMD, "0x738c", "0x038000", numa=1)
    host.commands[" ".join(probe_lib.gpus.ROCM_SMI)] = (0, capture)
    system = probe_lib.System(str(host.root), host.commands)
    gpus = probe_lib.probe_gpus(system)["gpus"]
    assert [(g["model"], g["memory_gib"], g["driver_version"]) for g in gpus[:4]] == [
        ("Arcturus GL-XL [Instinct MI100]", 32.0, "6.3.6")
    ] * 4
    assert (gpus[4]["model"], gpus[4]["memory_gib"]) == ("unknown amd device 0x738c", None)
    assert [g["source"] for g in gpus] == ["rocm-smi"] * 4 + ["sysfs"]
    assert "AMD GPU 0000:f0:00.0: rocm-smi does not list it (memory from the table)" in system.unknown


def test_a_gpu_split_into_mig_instances_is_planned_per_instance(tmp_path):
    host, _ = _host_with_capture(tmp_path, "a100-sxm4-mig.xml")
    gpu = _probe_gpus(host)
    first = gpu["gpus"][0]
    assert first["mig_mode"] == "Enabled"
    assert [m["memory_mib"] for m in first["mig_devices"]] == [19968, 19968]
    planned = planner.plan_for_host(gpu)
    assert "error" not in planned, planned
    assert planned["tensor_parallel"] == 1
    assert planned["weights_gib_per_gpu"] < 19968 / 1024
    assert "planned for one instance of 19968 MiB" in planned["reasons"][0]
    # No instance created: refused with the reason.
    empty = {"gpus": [{**first, "mig_devices": []}]}
    assert "MIG is enabled on A100 SXM4 40GB at 0000:00:04.0 with no instance" in planner.plan_for_host(empty)["error"]


def test_nvidias_lists_are_read_from_the_driver_packages_readmes():
    driver = (Path(__file__).parent / "fixtures/nvidia-readme/README.txt").read_text()
    current, legacy, legacy_names = nvidia_lists.parse_driver_readme(driver)
    assert legacy_names["0x102d"] == "Tesla K80"
    assert current["0x2330"] == "NVIDIA H100 80GB HBM3"  # listed per subsystem only: the first row's name
    assert current["0x1340"] == "NVIDIA GeForce 830M"  # the chip's own row, not the OEM's "830A" below it
    assert legacy["0x102d"] == 470  # Tesla K80
    assert "0x102d" not in current
    open_modules = nvidia_lists.parse_open_readme(
        (Path(__file__).parent / "fixtures/nvidia-readme/README.md").read_text()
    )
    assert {"0x2330", "0x28e0"} <= open_modules
    assert "0x1340" not in open_modules


def test_the_generated_lists_match_the_bundles_packages_when_they_are_at_hand():
    pool = paths.bundle_dir() / "pool"
    # The bundle's own lock: `make test` builds the bundle beside the unit tests; a pool is read whole or not at all.
    with bundle_lock():
        debs = sorted(pool.glob("nvidia-kernel-dkms_*.deb")) if pool.is_dir() else []
        if not debs:
            pytest.skip("no bundle with the driver packages on this machine ('ironserve bundle build' makes one)")
        tool = Path(__file__).resolve().parents[1] / "tools" / "nvidia_device_list.py"
        spec = importlib.util.spec_from_file_location("nvidia_device_list", tool)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.render(pool) == Path(nvidia_devices.__file__).read_text()


SEED = 20261201


@pytest.mark.parametrize("case", range(200))
def test_random_unknown_ids_of_every_vendor_never_raise(tmp_path, case):
    rng = random.Random(SEED + case)  # noqa: S311 - reproducible test data, not secrets
    host = FakeHost(tmp_path)
    vendors = [NV, AMD, "0x8086", "0x1a03", f"0x{rng.randrange(0x10000):04x}"]
    for index in range(rng.randrange(1, 6)):
        vendor = rng.choice(vendors)
        device = f"0x{rng.randrange(0x10000):04x}"
        klass = rng.choice(["0x030000", "0x030200", "0x038000", "0x120000", "0x068000", "0x020000"])
        host.pci([f"0000:{0x10 + index:02x}:00.0"], vendor, device, klass, numa=rng.choice([-1, 0, 1]))
    if rng.random() < 0.3:
        host.write("/usr/share/misc/pci.ids", f"10de  NVIDIA Corporation\n\t{rng.randrange(0x10000):04x}  X\n")
    if rng.random() < 0.5:  # a NIC of an unknown vendor on one of those functions
        host.nic("enp9s0", "02:00:00:00:00:09", ["0000:09:00.0"], rng.choice(["ixgbe", "unknown_drv", ""]))
    system = probe_lib.System(str(host.root), host.commands)
    everything = probe_lib.probe(system)  # every section: GPUs, disks, NICs, host
    assert everything["network"]["nics"] is not None
    gpu = everything["gpu"]
    for found in gpu["gpus"]:
        assert found["model"]
        if not found["known"]:
            assert found["device_id"] in found["model"] or found["name_source"] in ("pci.ids", "nvidia list")
    for source, branch in (("distribution", 550), ("cuda_repo", 580)):
        plan = driver_policy.driver_plan(gpu, source, branch, rng.choice([None, "auto", "open", "proprietary"]))
        assert all(isinstance(p, str) and p for p in plan["problems"])
    refusal = None
    try:
        driver_policy.cuda_toolkit_for(rng.choice(["550.163.01", "580.95.05", "", "x"]), gpu["gpus"])
    except driver_policy.HardwareRuleError as refused:  # the one exception a rule may raise: a refusal with its reason
        refusal = str(refused)
    assert refusal is None or refusal
    planned = planner.plan_for_host(gpu, nodes=rng.choice([1, 2]))
    assert planned.get("error") or planned.get("checkpoint")
    assert gpu_ids.describe_gpu(rng.choice(vendors), f"{rng.randrange(0x10000):x}")["model"]
    assert preflight.problems(everything, {"profile": rng.choice(["realtime", "batch", "edge", "none"])}) is not None


def test_the_generated_lists_are_of_the_driver_the_role_pins():
    pins = (Path(__file__).resolve().parents[1] / "roles/nvidia_driver/vars/Debian.yml").read_text()
    assert f"nvidia-kernel-dkms={nvidia_devices.DRIVER_VERSION}-" in pins
    assert f"nvidia-open-kernel-dkms={nvidia_devices.DRIVER_VERSION}-" in pins


def test_chip_family_ranges_do_not_overlap_and_agree_with_the_table():
    ranges = sorted(gpu_ids.NVIDIA_FAMILY_RANGES)
    for (_, high, _), (low, _, _) in itertools.pairwise(ranges):
        assert high < low, ranges
    for (vendor, device), (model, architecture, _, _) in gpu_ids._MODELS.items():
        if vendor == NV:
            assert gpu_ids.nvidia_family(device) == architecture, (model, device)
    # Hopper parts the table does not size (H800 PCIe, H20-3e) are Hopper, with FP8.
    for device in ("0x2322", "0x232c"):
        assert (gpu_ids.describe_gpu(NV, device)["architecture"], gpu_ids.describe_gpu(NV, device)["fp8"]) == (
            "hopper",
            True,
        )


def test_the_loaded_drivers_view_corrects_the_architecture(tmp_path):
    # The query form gives the compute capability the XML of these drivers lacks.
    host, _ = _host_with_capture(tmp_path, "rtx-2080-win.xml")
    host.commands["nvidia-smi --query-gpu=pci.bus_id,compute_cap --format=csv,noheader"] = (
        0,
        "00000000:0A:00.0, 7.5\n",
    )
    gpu = _probe_gpus(host)["gpus"][0]
    assert (gpu["compute_capability"], gpu["architecture"]) == ("7.5", "turing")
    # A device placed in the wrong family is corrected by nvidia-smi's product architecture, or its capability.
    misplaced = {**gpu_ids.describe_gpu(NV, "0x2204"), "device_id": "0x2204"}  # placed in ampere-ga10x
    corrected = gpu_ids.with_driver_facts(misplaced, "Some GPU", 98304, None, "Hopper")
    assert (corrected["architecture"], corrected["fp8"], corrected["architecture_source"]) == (
        "hopper",
        True,
        "nvidia-smi",
    )
    by_capability = gpu_ids.with_driver_facts(misplaced, None, None, "8.9", "Ampere")
    assert by_capability["architecture"] == "ada"
    same_family = gpu_ids.with_driver_facts(misplaced, None, None, None, "Ampere")
    assert same_family["architecture"] == "ampere-ga10x"


def test_the_loaded_modules_flavour_is_read(tmp_path):
    host = FakeHost(tmp_path)
    host.write(
        "/proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build  (dvs-builder@U16)\n",
    )
    assert _probe_gpus(host)["driver_module_flavour"] == "open"
    host.write("/proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.163.01  Release\n")
    assert _probe_gpus(host)["driver_module_flavour"] == ("proprietary")
