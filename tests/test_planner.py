"""The model planner across the hardware our users run, each expectation justified from published figures.

Figures used: DeepSeek-V3/R1 FP8 checkpoint 689 GB (642 GiB, 163 safetensors files on the model card);
R1 AWQ about 340 GiB; distills at 2 bytes per parameter (Llama-70B 70.6 B, Qwen-32B 32.8 B, Qwen-14B
14.8 B, Qwen-7B 7.6 B). GPU memory from the data sheets: H200 141 GB, H100 80 GB, A100 80 GB, L40S 48 GB,
RTX 4090 24 GB, B200 180 GB, MI300X 192 GB. FP8 tensor cores: Ada, Hopper, Blackwell, CDNA3; not Ampere.
Plans use 90% of GPU memory (vLLM's default utilisation).
"""

from __future__ import annotations

import pytest
from ironserve_target import gpu_ids

from ironserve import cli
from ironserve.planner import MIN_CONTEXT, Cluster, PlanError, plan

NV, AMD = gpu_ids.NVIDIA_VENDOR, gpu_ids.AMD_VENDOR

# (label, vendor, device id, GPUs per node, nodes, checkpoint, engine, precision, TP, context check, why)
CASES = [
    (
        "8xH200",
        NV,
        "0x2335",
        8,
        1,
        "deepseek-r1-fp8",
        "sglang",
        "fp8",
        8,
        lambda c: c >= 131072,
        "8 x 141 GB x 0.9 = 1015 GB holds the 689 GB FP8 checkpoint (80 GiB per GPU at TP8) with about 40 GiB per "
        "GPU left for MLA's 69 KiB/token cache: the full context for several sequences",
    ),
    (
        "8xH100",
        NV,
        "0x2330",
        8,
        1,
        "deepseek-r1-awq",
        "vllm",
        "awq",
        8,
        lambda c: c >= 65536,
        "8 x 80 GB x 0.9 = 576 GiB is less than the 642 GiB FP8 checkpoint, so FP8 does not fit one node; the "
        "340 GiB AWQ build does (42.5 GiB per GPU)",
    ),
    (
        "2x8xH100",
        NV,
        "0x2330",
        8,
        2,
        "deepseek-r1-fp8",
        "sglang",
        "fp8",
        16,
        lambda c: c >= 65536,
        "two nodes give 16 x 72 GiB: the FP8 checkpoint at TP16 is 40 GiB per GPU (DeepSeek's published 2x8 H100 "
        "deployment)",
    ),
    (
        "8xA100-80GB",
        NV,
        "0x20b2",
        8,
        1,
        "deepseek-r1-awq",
        "vllm",
        "awq",
        8,
        lambda c: c >= 65536,
        "Ampere has no FP8 tensor cores for DeepSeek's block-wise FP8 (vllm#13885); AWQ fits 8 x 80 GB",
    ),
    (
        "1xL40S",
        NV,
        "0x26b9",
        1,
        1,
        "r1-distill-qwen-14b",
        "vllm",
        "bf16",
        1,
        lambda c: c >= 16384,
        "48 GB x 0.9 = 43 GiB: the 32B distill (61 GiB) does not fit, the 14B (27.6 GiB) does, with an FP8 KV "
        "cache (Ada has FP8) for a longer context",
    ),
    (
        "1xRTX4090",
        NV,
        "0x2684",
        1,
        1,
        "r1-distill-qwen-7b",
        "vllm",
        "bf16",
        1,
        lambda c: c >= 16384,
        "24 GB x 0.9 = 21.6 GiB: the 14B distill (27.6 GiB) does not fit; the 7B (about 15 GB) fits one 24 GB card",
    ),
    (
        "4xB200",
        NV,
        "0x2901",
        4,
        1,
        "deepseek-r1-awq",
        "vllm",
        "awq",
        4,
        lambda c: c == 163840,
        "4 x 180 GB x 0.9 = 648 GB cannot hold 642 GiB of FP8 weights plus activations; 8xB200 would. AWQ at TP4 "
        "is 85 GiB per GPU, leaving room for the full 163840-token context",
    ),
    (
        "8xMI300X",
        AMD,
        "0x74a1",
        8,
        1,
        "deepseek-r1-fp8",
        "sglang",
        "fp8",
        8,
        lambda c: c == 163840,
        "8 x 192 GB: CDNA3 has FP8; 80 GiB of weights per GPU leaves over 80 GiB of KV cache (AMD's published "
        "SGLang TP8 deployment)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_plan_for_published_hardware(case):
    _, vendor, device, per_node, nodes, checkpoint, engine, precision, tp, context_ok, why = case
    chosen = plan(Cluster.of(vendor, device, per_node, nodes))
    assert (chosen.checkpoint, chosen.engine, chosen.precision, chosen.tensor_parallel) == (
        checkpoint,
        engine,
        precision,
        tp,
    ), why
    assert context_ok(chosen.max_model_len), (chosen.max_model_len, why)
    assert chosen.max_model_len % 1024 == 0
    assert chosen.nodes == (nodes if tp > per_node else 1)
    usable = gpu_ids.describe_gpu(vendor, device)["memory_gib"] * 0.9
    assert chosen.weights_gib_per_gpu + chosen.kv_gib_per_gpu < usable


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_engine_arguments_never_requantize_native_fp8(case):
    _, vendor, device, per_node, nodes, *_ = case
    chosen = plan(Cluster.of(vendor, device, per_node, nodes))
    args = chosen.engine_args
    assert "fp8" not in [args[i + 1] for i, a in enumerate(args) if a == "--quantization"]
    if chosen.engine == "vllm":
        assert args[args.index("--max-model-len") + 1] == str(chosen.max_model_len)
        assert args[args.index("--gpu-memory-utilization") + 1] == "0.90"
        assert args[args.index("--tensor-parallel-size") + 1] == str(chosen.tensor_parallel)
    else:
        assert args[args.index("--context-length") + 1] == str(chosen.max_model_len)
        assert args[args.index("--mem-fraction-static") + 1] == "0.90"
        assert args[args.index("--tp-size") + 1] == str(chosen.tensor_parallel)
    if chosen.precision == "awq":
        assert args[args.index("--quantization") + 1] == "awq_marlin"


def test_fp8_on_ampere_is_refused_with_the_reason():
    with pytest.raises(PlanError, match="has no FP8 for DeepSeek's block-wise FP8 weights"):
        plan(Cluster.of(NV, "0x20b2", 8), "deepseek-r1-fp8")


def test_fp8_that_does_not_fit_names_the_sizes():
    with pytest.raises(PlanError) as refused:
        plan(Cluster.of(NV, "0x2330", 8), "deepseek-r1-fp8")
    assert "deepseek-r1-fp8 (642 GiB of fp8 weights) does not fit 8 x H100 SXM5 80GB at 90% memory use" in str(
        refused.value
    )
    assert "TP8: 80.2 GiB weights" in str(refused.value)


def test_gpus_the_engines_cannot_run_on_are_refused():
    with pytest.raises(PlanError, match=r"Tesla P40 has compute capability 6\.1; vLLM and SGLang need 7\.0"):
        plan(Cluster.of(NV, "0x1b38", 1))
    with pytest.raises(PlanError, match=r"unknown nvidia device 0x9999 \(nvidia device 0x9999\) is in neither"):
        plan(Cluster.of(NV, "0x9999", 1))
    # An RTX 3090: NVIDIA's list names it and its family places it, but only the loaded driver reports its memory.
    with pytest.raises(PlanError, match=r"the memory of NVIDIA GeForce RTX 3090 \(0x2204\) is not in the hardware"):
        plan(Cluster.of(NV, "0x2204", 1))
    with pytest.raises(PlanError, match="at least one GPU"):
        plan(Cluster.of(NV, "0x2335", 0))
    with pytest.raises(PlanError, match="unknown checkpoint 'deepseek-r2'"):
        plan(Cluster.of(NV, "0x2335", 8), "deepseek-r2")


def test_turing_runs_distills_in_fp16():
    chosen = plan(Cluster.of(NV, "0x1eb8", 2))  # 2 x T4 16 GB, no BF16 before compute capability 8.0
    assert chosen.precision == "fp16"
    assert chosen.engine_args[-2:] == ["--dtype", "float16"]
    assert chosen.max_model_len >= MIN_CONTEXT


def test_cli_plan_by_model_name(capsys):
    assert cli.main(["plan", "--gpu", "H200 SXM", "--count", "8"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "deepseek-r1-fp8" in out
    assert "sglang" in out
    assert cli.main(["plan", "--gpu", "A100 SXM4 80GB", "--count", "8", "--model", "deepseek-r1-fp8"]) == 2
    assert "has no FP8" in capsys.readouterr().err
    assert cli.main(["plan", "--gpu", "no such gpu", "--count", "1"]) == 2


def test_a_probed_host_is_planned_or_refused_with_the_reason():
    from ironserve.planner import plan_for_host

    h200 = gpu_ids.describe_gpu(gpu_ids.NVIDIA_VENDOR, "0x2335")
    planned = plan_for_host({"gpus": [h200] * 8})
    assert (planned["checkpoint"], planned["engine"], planned["tensor_parallel"]) == ("deepseek-r1-fp8", "sglang", 8)
    assert plan_for_host({"gpus": []}) == {
        "error": "the probe found no GPU the hardware rules know, so no DeepSeek model can be planned here"
    }
    l40s = gpu_ids.describe_gpu(gpu_ids.NVIDIA_VENDOR, "0x26b9")
    assert plan_for_host({"gpus": [h200, l40s]})["error"].startswith("one engine spans identical GPUs only")
