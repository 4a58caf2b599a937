"""Driver flavour, driver branch and CUDA toolkit decisions across GPU generations, Pascal to Blackwell."""

from __future__ import annotations

import pytest
from ironserve_target import gpu_ids

from ironserve import driver_policy
from ironserve.driver_policy import HardwareRuleError, cuda_toolkit_for, driver_branch_problems, kernel_module_flavour

NV = gpu_ids.NVIDIA_VENDOR
GPU = {
    "pascal": gpu_ids.describe_gpu(NV, "0x15f8"),  # Tesla P100 PCIe 16GB
    "volta": gpu_ids.describe_gpu(NV, "0x1db5"),  # Tesla V100 SXM2 32GB
    "turing": gpu_ids.describe_gpu(NV, "0x1eb8"),  # Tesla T4
    "ampere": gpu_ids.describe_gpu(NV, "0x20b2"),  # A100 SXM4 80GB
    "ada": gpu_ids.describe_gpu(NV, "0x26b9"),  # L40S
    "hopper": gpu_ids.describe_gpu(NV, "0x2335"),  # H200 SXM
    "blackwell": gpu_ids.describe_gpu(NV, "0x2901"),  # B200
}


@pytest.mark.parametrize(
    ("generation", "flavour"),
    [
        ("pascal", "proprietary"),
        ("volta", "proprietary"),
        ("turing", "open"),
        ("ampere", "open"),
        ("ada", "open"),
        ("hopper", "open"),
        ("blackwell", "open"),
    ],
)
def test_flavour_follows_the_architecture(generation, flavour):
    assert kernel_module_flavour([GPU[generation]] * 8) == flavour


def test_flavour_overrides_that_cannot_work_are_refused():
    with pytest.raises(HardwareRuleError, match="B200 180GB need the open kernel modules; use 'open'"):
        kernel_module_flavour([GPU["blackwell"]], "proprietary")
    with pytest.raises(HardwareRuleError, match="do not drive Tesla V100 SXM2 32GB; use 'proprietary'"):
        kernel_module_flavour([GPU["volta"]], "open")
    with pytest.raises(HardwareRuleError, match="no single driver flavour drives this host"):
        kernel_module_flavour([GPU["blackwell"], GPU["pascal"]])
    assert kernel_module_flavour([GPU["hopper"]], "proprietary") == "proprietary"  # supported, just not default
    assert kernel_module_flavour([]) == "open"  # image build: NVIDIA's default flavour
    assert kernel_module_flavour([], None, "distribution", 550) == "proprietary"  # Debian 13's open 550 fails


@pytest.mark.parametrize(
    ("branch", "generation", "problem"),
    [
        (580, "pascal", None),  # 580 is the last branch for Pascal and Volta
        (590, "volta", "is driven by branch 580 at the newest, not 590"),
        (535, "hopper", None),
        (550, "blackwell", "needs driver branch 570 or newer, not 550"),
        (580, "blackwell", None),
        (440, "ampere", "needs driver branch 450 or newer, not 440"),
    ],
)
def test_driver_branch_support(branch, generation, problem):
    problems = driver_branch_problems(branch, [GPU[generation]])
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1
        assert problem in problems[0]


@pytest.mark.parametrize(
    ("driver", "generation", "toolkit"),
    [
        ("580.95.05", "hopper", "13.0"),
        ("580.95.05", "volta", "12.9"),  # CUDA 13 no longer builds for Volta
        ("580.95.05", "pascal", "12.9"),
        ("570.133.20", "blackwell", "12.8"),
        ("560.35.03", "ampere", "12.6"),
        ("550.163.01", "ada", "12.4"),
        ("535.247.01", "turing", "12.2"),
    ],
)
def test_cuda_toolkit_matches_driver_and_architecture(driver, generation, toolkit):
    assert cuda_toolkit_for(driver, [GPU[generation]]) == toolkit


def test_blackwell_on_an_old_driver_has_no_toolkit():
    with pytest.raises(
        HardwareRuleError, match=r"runs on driver 560\.35\.03 and builds for compute capabilities 10\.0"
    ):
        cuda_toolkit_for("560.35.03", [GPU["blackwell"]])


def test_default_branch_drives_every_generation():
    assert driver_branch_problems(driver_policy.DEFAULT_DRIVER_BRANCH, list(GPU.values())) == []


def _facts(generation: str | None, count: int = 8, nvswitch: bool = False) -> dict:
    gpus = [GPU[generation]] * count if generation else []
    return {"gpus": gpus, "nvswitch": nvswitch}


def test_driver_plan_for_an_image_build_and_a_pcie_host():
    # No GPUs (a golden image, the bench), from Debian: the proprietary flavour, because Debian 13's open 550
    # module does not build for trixie's kernels (KNOWN_MODULE_BUILD_FAILURES); nothing else needed.
    assert driver_policy.driver_plan(_facts(None), "distribution", 550) == {
        "flavour": "proprietary",
        "fabric_manager": False,
        "nvlink5": False,
        "problems": [],
    }
    l40s = driver_policy.driver_plan(_facts("ada", 4), "distribution", 550)
    assert (l40s["flavour"], l40s["fabric_manager"], l40s["problems"]) == ("proprietary", False, [])
    # From NVIDIA's repository the open flavour, NVIDIA's default since 560.
    assert driver_policy.driver_plan(_facts("ada", 4), "cuda_repo", 580)["flavour"] == "open"
    assert driver_policy.driver_plan(_facts(None), "cuda_repo", 580)["flavour"] == "open"
    assert driver_policy.driver_plan(_facts("volta"), "cuda_repo", 580)["flavour"] == "proprietary"


def test_auto_never_chooses_a_module_known_not_to_build_and_blackwell_from_debian_stops_naming_the_fix():
    for generation in ("turing", "ampere", "ada", "hopper"):
        assert driver_policy.driver_plan(_facts(generation), "distribution", 550)["flavour"] == "proprietary"
    # An explicit choice is the site's: another kernel may build it, and the role names the compiler's errors.
    assert driver_policy.driver_plan(_facts("hopper"), "distribution", 550, "open")["flavour"] == "open"
    b200 = driver_policy.driver_plan(_facts("blackwell"), "distribution", 550)
    assert b200["flavour"] is None
    assert b200["problems"] == [
        "nvidia_driver_flavour: B200 180GB need the open kernel modules, and Debian 13's open-flavour 550.163.01 "
        "module does not build for trixie's kernels (6.12: pci_resize_resource takes a fourth argument; measured by "
        "the gpu-dkms bench scenario): set nvidia_driver_source: cuda_repo (NVIDIA's repository, or a mirror of it)",
        "nvidia_driver_source: B200 180GB (blackwell) needs driver branch 570 or newer, not 550; the distribution's "
        "driver is branch 550: set nvidia_driver_source: cuda_repo for another",
    ]


def test_nvswitch_boards_need_fabric_manager_from_the_cuda_repository():
    hgx = driver_policy.driver_plan(_facts("hopper", nvswitch=True), "cuda_repo", 580)
    assert (hgx["fabric_manager"], hgx["nvlink5"], hgx["problems"]) == (True, False, [])
    b200 = driver_policy.driver_plan(_facts("blackwell", nvswitch=True), "cuda_repo", 580)
    assert (b200["fabric_manager"], b200["nvlink5"]) == (True, True)
    from_debian = driver_policy.driver_plan(_facts("hopper", nvswitch=True), "distribution", 550)
    assert from_debian["problems"] == [
        "the probe found NVSwitch, so Fabric Manager must run at exactly the driver's version, and only NVIDIA's "
        "CUDA repository carries both: set nvidia_driver_source: cuda_repo (or mirror that repository)"
    ]


def test_driver_plan_lists_every_refusal_at_once():
    plan = driver_policy.driver_plan(_facts("blackwell"), "distribution", 550, "proprietary", "enabled", False)
    assert plan["flavour"] is None
    assert plan["problems"] == [
        "nvidia_driver_flavour: B200 180GB need the open kernel modules; use 'open'",
        f"nvidia_driver_source: {driver_branch_problems(550, [GPU['blackwell']])[0]}; the distribution's driver is "
        "branch 550: set nvidia_driver_source: cuda_repo for another",
        "Secure Boot is enabled, so unsigned DKMS modules will not load: set nvidia_driver_signing_key and "
        "nvidia_driver_signing_cert (a machine owner key enrolled with 'mokutil --import'), or disable Secure Boot",
    ]
    assert driver_policy.driver_plan(_facts("hopper"), "cuda_repo", 580, None, "enabled", True)["problems"] == []


PINNED = ["nvidia-open-kernel-dkms=550.163.01-2", "nvidia-smi=550.163.01-2", "nvidia-persistenced=550.163.01-1"]


def test_a_fresh_host_or_a_rerun_changes_no_driver():
    assert driver_policy.driver_version_changes([], PINNED, ["nvidia-kernel-dkms"]) == []
    # What dpkg-query says of a re-run: the pins installed, the other flavour once there and purged.
    installed = [
        "installed nvidia-open-kernel-dkms 550.163.01-2",
        "installed nvidia-smi 550.163.01-2",
        "not-installed nvidia-kernel-dkms ",
        "config-files nvidia-persistenced 550.127.05-1",
    ]
    assert driver_policy.driver_version_changes(installed, PINNED, ["nvidia-kernel-dkms"]) == []


def test_another_version_or_flavour_is_named_as_a_change():
    installed = ["installed nvidia-kernel-dkms 550.127.05-1", "installed nvidia-smi 550.127.05-1"]
    assert driver_policy.driver_version_changes(installed, PINNED, ["nvidia-kernel-dkms"]) == [
        "nvidia-smi 550.127.05-1 -> 550.163.01-2",
        "nvidia-kernel-dkms 550.127.05-1 -> removed (the other kernel-module flavour)",
    ]


def _at(gpu: dict, address: str) -> dict:
    return {**gpu, "pci_address": address}


def test_nvidia_smi_sees_exactly_the_probed_gpus():
    probed = [_at(GPU["hopper"], "0000:19:00.0"), _at(GPU["hopper"], "0000:3b:00.0")]
    smi = ["00000000:19:00.0, 0x233510DE, NVIDIA H200", "00000000:3B:00.0, 0x233510DE, NVIDIA H200"]
    assert driver_policy.smi_mismatches(probed, smi) == []


def test_a_missing_extra_or_different_gpu_is_named():
    probed = [_at(GPU["hopper"], "0000:19:00.0"), _at(GPU["hopper"], "0000:3b:00.0")]
    smi = ["00000000:19:00.0, 0x233010DE, NVIDIA H100 80GB HBM3", "00000000:5D:00.0, 0x233510DE, NVIDIA H200"]
    assert driver_policy.smi_mismatches(probed, smi) == [
        "0000:19:00.0: the probe found H200 SXM 141GB (0x2335), nvidia-smi reports NVIDIA H100 80GB HBM3 (0x2330)",
        "H200 SXM 141GB at 0000:3b:00.0: nvidia-smi does not see it",
        "NVIDIA H200 at 0000:5d:00.0: nvidia-smi sees it, the probe did not",
    ]


def test_the_gpu_stage_installs_the_stack_of_the_gpus_found_else_of_the_profile():
    amd = gpu_ids.describe_gpu(gpu_ids.AMD_VENDOR, "0x74a1")  # MI300X
    assert driver_policy.gpu_stacks({"gpus": [GPU["hopper"]]}, "batch") == ["nvidia"]  # the hardware decides
    assert driver_policy.gpu_stacks({"gpus": [amd, amd]}, "realtime") == ["amd"]
    assert driver_policy.gpu_stacks({"gpus": [amd, GPU["ada"]]}, None) == ["amd", "nvidia"]
    # Image builds (no GPU): the profile's vendor; the profiles that name none get NVIDIA's (the lab, golden images).
    assert driver_policy.gpu_stacks({"gpus": []}, "batch") == ["amd"]
    assert driver_policy.gpu_stacks({"gpus": []}, "edge") == ["nvidia"]
    assert driver_policy.gpu_stacks({"gpus": []}, "none") == ["nvidia"]
    assert driver_policy.gpu_stacks({}, "no-such-profile") == ["nvidia"]
