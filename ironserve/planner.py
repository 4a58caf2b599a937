"""Which DeepSeek checkpoint to serve, how, on the GPUs a site has: the model plan.

From the probed GPUs (model, memory, architecture, FP8 support), the number of nodes and the operator's
wish (a checkpoint name from CHECKPOINTS, or ``auto``), choose the engine, checkpoint, tensor
parallel size, precision, context length (``--max-model-len``, sized from the memory left for the KV
cache), the memory fraction and the KV-cache dtype, or refuse with the reason.

The arithmetic, per GPU: usable = memory x fraction; weights = checkpoint size / tensor-parallel size;
KV budget = usable - weights - activation reserve. Context = the tokens that budget holds, divided by the
number of full-length sequences the plan must hold at once, capped at the model's own maximum.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ironserve_target import gpu_ids

MEMORY_FRACTION = 0.90  # vLLM's default --gpu-memory-utilization; used for SGLang's --mem-fraction-static too
CONCURRENT_FULL_SEQUENCES = 4  # the KV cache must hold this many sequences at the full context length
MIN_CONTEXT = 8192  # below this a reasoning model cannot finish its thinking: refuse instead
CONTEXT_STEP = 1024
GIB = 1024**3
# Activations, CUDA graphs and the engine's own buffers, per GPU (measured figures for vLLM/SGLang are
# 1-2 GiB for small dense models and 3-5 GiB for DeepSeek's MoE at large batch).
RESERVE_GIB = {"mla": 5.0, "gqa": 2.0}
AUTO_ORDER = (
    "deepseek-r1-fp8",
    "deepseek-r1-awq",
    "r1-distill-llama-70b",
    "r1-distill-qwen-32b",
    "r1-distill-qwen-14b",
    "r1-distill-qwen-7b",
    "r1-distill-llama-8b",
    "r1-distill-qwen-1.5b",
)


# DeepSeek checkpoints the planner chooses from, best first. weights_gib: the checkpoint's size on disk
# (FP8: DeepSeek-V3/R1 ship 163 safetensors files, about 689 GB; BF16 distills: parameters x 2 bytes;
# AWQ: 4-bit weights plus BF16 embeddings, about 340 GiB). kv_bytes_per_token: KV cache for one token
# over all layers at BF16; for DeepSeek's multi-head latent attention (MLA) that is (512 latent + 64
# rope) x 61 layers x 2 bytes, kept whole on every tensor-parallel rank; for the distills it is
# 2 (K and V) x layers x KV heads x 128 x 2 bytes, split across ranks up to the number of KV heads.
CHECKPOINTS: dict[str, dict] = {
    "deepseek-r1-fp8": {
        "repo": "deepseek-ai/DeepSeek-R1",
        "params_b": 671,
        "weights_gib": 642,
        "precision": "fp8",
        "attention": "mla",
        "kv_bytes_per_token": 576 * 61 * 2,
        "kv_heads": None,
        "heads": 128,
        "max_context": 163840,
        "engine": "sglang",
    },
    "deepseek-r1-awq": {
        "repo": "cognitivecomputations/DeepSeek-R1-AWQ",
        "params_b": 671,
        "weights_gib": 340,
        "precision": "awq",
        "attention": "mla",
        "kv_bytes_per_token": 576 * 61 * 2,
        "kv_heads": None,
        "heads": 128,
        "max_context": 163840,
        "engine": "vllm",
    },
    "r1-distill-llama-70b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
        "params_b": 70.6,
        "weights_gib": 131.5,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 80 * 8 * 128 * 2,
        "kv_heads": 8,
        "heads": 64,
        "max_context": 131072,
        "engine": "vllm",
    },
    "r1-distill-qwen-32b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
        "params_b": 32.8,
        "weights_gib": 61.1,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 64 * 8 * 128 * 2,
        "kv_heads": 8,
        "heads": 40,
        "max_context": 131072,
        "engine": "vllm",
    },
    "r1-distill-qwen-14b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
        "params_b": 14.8,
        "weights_gib": 27.6,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 48 * 8 * 128 * 2,
        "kv_heads": 8,
        "heads": 40,
        "max_context": 131072,
        "engine": "vllm",
    },
    "r1-distill-qwen-7b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "params_b": 7.6,
        "weights_gib": 14.2,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 28 * 4 * 128 * 2,
        "kv_heads": 4,
        "heads": 28,
        "max_context": 131072,
        "engine": "vllm",
    },
    "r1-distill-llama-8b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
        "params_b": 8.0,
        "weights_gib": 15.0,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 32 * 8 * 128 * 2,
        "kv_heads": 8,
        "heads": 32,
        "max_context": 131072,
        "engine": "vllm",
    },
    "r1-distill-qwen-1.5b": {
        "repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
        "params_b": 1.8,
        "weights_gib": 3.3,
        "precision": "bf16",
        "attention": "gqa",
        "kv_bytes_per_token": 2 * 28 * 2 * 128 * 2,
        "kv_heads": 2,
        "heads": 12,
        "max_context": 131072,
        "engine": "vllm",
    },
}
# DeepSeek-V3 shares R1's architecture and checkpoint layout.
CHECKPOINTS["deepseek-v3-fp8"] = {**CHECKPOINTS["deepseek-r1-fp8"], "repo": "deepseek-ai/DeepSeek-V3"}


class PlanError(ValueError):
    """Nothing fits, or the wish cannot work on this hardware; the message says why."""


@dataclass
class Plan:
    checkpoint: str
    repo: str
    engine: str
    precision: str
    tensor_parallel: int
    nodes: int
    max_model_len: int
    memory_fraction: float
    kv_cache_dtype: str
    quantization: str | None
    weights_gib_per_gpu: float
    kv_gib_per_gpu: float
    engine_args: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Cluster:
    """Identical GPUs: ``per_node`` on each of ``nodes`` nodes."""

    gpu: dict  # gpu_ids.describe_gpu(...) of one GPU
    per_node: int
    nodes: int = 1

    @classmethod
    def of(cls, vendor: str, device_id: str, per_node: int, nodes: int = 1) -> Cluster:
        return cls(gpu_ids.describe_gpu(vendor, device_id), per_node, nodes)

    @property
    def label(self) -> str:
        nodes = f"{self.nodes} x " if self.nodes > 1 else ""
        return f"{nodes}{self.per_node} x {self.gpu['model']}"


def _precision_problem(checkpoint: dict, gpu: dict) -> str | None:
    if checkpoint["precision"] == "fp8" and not gpu["fp8"]:
        return (
            f"{gpu['model']} ({gpu['architecture']}) has no FP8 for DeepSeek's block-wise FP8 weights; "
            "use an AWQ build or a distill"
        )
    if checkpoint["precision"] == "awq" and (
        gpu["vendor"] != "nvidia" or not gpu_ids.capability_at_least(gpu["compute_capability"], "8.0")
    ):
        return f"AWQ kernels (Marlin) need an NVIDIA GPU of compute capability 8.0 or newer, not {gpu['model']}"
    return None


def _tensor_parallel_sizes(checkpoint: dict, cluster: Cluster) -> list[int]:
    """Powers of two up to the GPUs available that divide the attention heads; across nodes only at full size."""
    sizes = []
    size = 1
    while size <= cluster.per_node:
        if checkpoint["heads"] % size == 0:
            sizes.append(size)
        size *= 2
    total = cluster.per_node * cluster.nodes
    if cluster.nodes > 1 and checkpoint["heads"] % total == 0:
        sizes.append(total)
    return sizes


def _kv_bytes_per_gpu(checkpoint: dict, tensor_parallel: int, kv_dtype: str) -> float:
    per_token = checkpoint["kv_bytes_per_token"]
    if checkpoint["attention"] == "gqa":
        per_token /= min(tensor_parallel, checkpoint["kv_heads"])  # KV heads are split, then replicated
    return per_token / 2 if kv_dtype.startswith("fp8") else per_token


def _fit(name: str, cluster: Cluster) -> Plan | str:
    """The plan for one checkpoint on this cluster, or the reason it does not fit."""
    checkpoint = CHECKPOINTS[name]
    gpu = cluster.gpu
    problem = _precision_problem(checkpoint, gpu)
    if problem:
        return problem
    usable = gpu["memory_gib"] * MEMORY_FRACTION
    reserve = RESERVE_GIB[checkpoint["attention"]]
    tried, fitting = [], []
    for tensor_parallel in _tensor_parallel_sizes(checkpoint, cluster):
        weights = checkpoint["weights_gib"] / tensor_parallel
        budget = usable - weights - reserve
        tried.append(f"TP{tensor_parallel}: {weights:.1f} GiB weights + {reserve} GiB reserve of {usable:.1f} GiB")
        if budget <= 0:
            continue
        # FP8 KV cache halves its size; used only where it is needed to reach the model's full context, on
        # FP8 hardware, and with standard attention (vLLM's FP8 KV for MLA is not relied on).
        kv_dtype = "auto"
        tokens = budget * GIB / _kv_bytes_per_gpu(checkpoint, tensor_parallel, kv_dtype)
        if (
            tokens / CONCURRENT_FULL_SEQUENCES < checkpoint["max_context"]
            and gpu["fp8"]
            and checkpoint["attention"] == "gqa"
            and checkpoint["engine"] == "vllm"
        ):
            kv_dtype = "fp8"
            tokens = budget * GIB / _kv_bytes_per_gpu(checkpoint, tensor_parallel, kv_dtype)
        context = min(checkpoint["max_context"], int(tokens / CONCURRENT_FULL_SEQUENCES) // CONTEXT_STEP * CONTEXT_STEP)
        if context < MIN_CONTEXT:
            tried[-1] += f", leaves {budget:.1f} GiB for KV: {context} tokens of context"
            continue
        fitting.append((tensor_parallel, context, kv_dtype, weights, budget))
    if fitting:
        # The fewest GPUs that reach the model's full context; failing that, the longest context.
        full = [f for f in fitting if f[1] == checkpoint["max_context"]]
        tensor_parallel, context, kv_dtype, weights, budget = full[0] if full else max(fitting, key=lambda f: f[1])
        return _plan(name, checkpoint, cluster, tensor_parallel, context, kv_dtype, weights, budget)
    return (
        f"{name} ({checkpoint['weights_gib']} GiB of {checkpoint['precision']} weights) does not fit "
        f"{cluster.label} at {MEMORY_FRACTION:.0%} memory use ({'; '.join(tried) or 'no usable TP size'})"
    )


def _plan(
    name: str,
    checkpoint: dict,
    cluster: Cluster,
    tensor_parallel: int,
    context: int,
    kv_dtype: str,
    weights: float,
    budget: float,
) -> Plan:
    nodes = cluster.nodes if tensor_parallel > cluster.per_node else 1
    quantization = "awq_marlin" if checkpoint["precision"] == "awq" else None
    # BF16 needs compute capability 8.0; Volta and Turing run the BF16 distills in FP16.
    half = (
        checkpoint["precision"] == "bf16"
        and cluster.gpu["vendor"] == "nvidia"
        and not (gpu_ids.capability_at_least(cluster.gpu["compute_capability"], "8.0"))
    )
    if checkpoint["engine"] == "sglang":
        args = [
            "--tp-size",
            str(tensor_parallel),
            "--context-length",
            str(context),
            "--mem-fraction-static",
            f"{MEMORY_FRACTION:.2f}",
            "--kv-cache-dtype",
            kv_dtype,
            "--trust-remote-code",
        ]
    else:
        args = [
            "--tensor-parallel-size",
            str(tensor_parallel),
            "--max-model-len",
            str(context),
            "--gpu-memory-utilization",
            f"{MEMORY_FRACTION:.2f}",
            "--kv-cache-dtype",
            kv_dtype,
        ]
        if quantization:
            args += ["--quantization", quantization]
        if half:
            args += ["--dtype", "float16"]
    # Ranks, rendezvous and Ray for a plan spanning nodes: engines.launch_script, which knows each host's place.
    # Native FP8 checkpoints carry their quantization config: '--quantization fp8' would re-quantize them.
    reasons = [
        f"{cluster.label}: {weights:.1f} GiB of weights and {budget:.1f} GiB of KV cache per GPU "
        f"at TP{tensor_parallel}",
        f"context {context} tokens holds {CONCURRENT_FULL_SEQUENCES} full-length sequences "
        f"(model maximum {checkpoint['max_context']})",
    ]
    if kv_dtype == "fp8":
        reasons.append("FP8 KV cache: the BF16 cache would not hold the full context on this GPU")
    if half:
        reasons.append(f"{cluster.gpu['model']} has no BF16: the weights run in FP16")
    return Plan(
        checkpoint=name,
        repo=checkpoint["repo"],
        engine=checkpoint["engine"],
        precision="fp16" if half else checkpoint["precision"],
        tensor_parallel=tensor_parallel,
        nodes=nodes,
        max_model_len=context,
        memory_fraction=MEMORY_FRACTION,
        kv_cache_dtype=kv_dtype,
        quantization=quantization,
        weights_gib_per_gpu=round(weights, 1),
        kv_gib_per_gpu=round(budget, 1),
        engine_args=args,
        reasons=reasons,
    )


def plan(cluster: Cluster, wish: str = "auto") -> Plan:
    """The plan for ``wish`` (a checkpoint name) or the best checkpoint that fits (``auto``)."""
    gpu = cluster.gpu
    if cluster.per_node < 1 or cluster.nodes < 1:
        raise PlanError("no GPU to serve on: the plan needs at least one GPU per node")
    if not gpu.get("known"):
        raise PlanError(
            f"{gpu['model']} ({gpu.get('vendor')} device {gpu.get('device_id')}) is in neither NVIDIA's device "
            "lists nor ironserve's hardware rules (module_utils/ironserve_target/gpu_ids.py): its architecture, memory "
            "and FP8 support are unknown"
        )
    if gpu.get("memory_gib") is None:
        raise PlanError(
            f"the memory of {gpu['model']} ({gpu.get('device_id')}) is not in the hardware rules and nvidia-smi has "
            "not reported it: run the gpu stage first (the probe reads it from the loaded driver)"
        )
    if gpu["vendor"] == "nvidia" and not gpu_ids.capability_at_least(gpu["compute_capability"], "7.0"):
        raise PlanError(
            f"{gpu['model']} has compute capability {gpu['compute_capability']}; vLLM and SGLang need 7.0 or newer"
        )
    if wish != "auto":
        if wish not in CHECKPOINTS:
            raise PlanError(f"unknown checkpoint '{wish}'; choose auto or one of: {', '.join(CHECKPOINTS)}")
        fitted = _fit(wish, cluster)
        if isinstance(fitted, str):
            raise PlanError(fitted)
        return _all_nodes_used(fitted, cluster)
    refusals = []
    for name in AUTO_ORDER:
        fitted = _fit(name, cluster)
        if isinstance(fitted, Plan):
            fitted.reasons += [f"not chosen: {r}" for r in refusals]
            return _all_nodes_used(fitted, cluster)
        refusals.append(fitted)
    raise PlanError(f"no DeepSeek checkpoint fits {cluster.label}: " + " | ".join(refusals))


def _all_nodes_used(fitted: Plan, cluster: Cluster) -> Plan:
    """A plan that leaves nodes out is refused: the nodes were asked for one engine, and nothing would use them."""
    if fitted.nodes < cluster.nodes:
        raise PlanError(
            f"{cluster.nodes} nodes were asked for, and {fitted.checkpoint} runs on {fitted.nodes} "
            f"(TP{fitted.tensor_parallel} of {cluster.per_node} GPUs per node): one engine spans more nodes only when "
            "it does not fit on fewer; plan each node on its own (every inference host runs its own engine)"
        )
    return fitted


def plan_for_host(gpu_facts: dict, nodes: int = 1, wish: str = "auto") -> dict:
    """The plan for a probed host (the probe's ``gpu`` section), as a dict; ``{"error": reason}`` when none fits."""
    gpus = [g for g in gpu_facts.get("gpus", []) if g.get("known", True)]
    if not gpus:
        return {"error": "the probe found no GPU the hardware rules know, so no DeepSeek model can be planned here"}
    models = sorted({g["model"] for g in gpus})
    if len(models) > 1:
        return {"error": f"one engine spans identical GPUs only; this host has {', '.join(models)}"}
    split = [g for g in gpus if g.get("mig_mode") == "Enabled"]
    try:
        if split:
            return _plan_for_mig(split, nodes, wish)
        return plan(Cluster(gpus[0], len(gpus), nodes), wish).to_dict()
    except PlanError as exc:
        return {"error": str(exc)}


def _plan_for_mig(gpus: list[dict], nodes: int, wish: str) -> dict:
    """A plan for one MIG instance: CUDA sees each instance as its own device with its share of the memory, and
    tensor parallelism cannot span instances (no peer access between them), so an engine serves on one."""
    where = ", ".join(f"{g['model']} at {g.get('pci_address')}" for g in gpus)
    instances = [m for g in gpus for m in g.get("mig_devices") or [] if m.get("memory_mib")]
    if not instances:
        raise PlanError(f"MIG is enabled on {where} with no instance created; create instances or disable MIG")
    if nodes > 1:
        raise PlanError(f"MIG is enabled on {where}: an engine cannot span MIG instances, let alone nodes")
    smallest = min(m["memory_mib"] for m in instances)
    instance = {**gpus[0], "memory_gib": round(smallest / 1024, 1), "model": f"{gpus[0]['model']} MIG instance"}
    try:
        planned = plan(Cluster(instance, 1, 1), wish).to_dict()
    except PlanError as exc:
        raise PlanError(
            f"MIG is enabled on {where}; an engine serves on one instance ({smallest} MiB at the smallest) and "
            f"{exc}; disable MIG (nvidia-smi -mig 0, then reset the GPU) to plan for whole GPUs"
        ) from exc
    planned["reasons"] = [
        f"MIG is enabled on {where}: planned for one instance of {smallest} MiB (tensor parallelism cannot span "
        f"MIG instances); {len(instances)} instance(s) could each serve a replica",
        *planned.get("reasons", []),
    ]
    return planned
