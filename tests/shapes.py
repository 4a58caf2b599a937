"""The six deployment shapes the rendering tests cover: vLLM and SGLang at one GPU, TP8 on one node, and two nodes."""

from __future__ import annotations

from ironserve_target import gpu_ids

from ironserve import planner


def shape_plan(engine: str, shape: str) -> dict:
    """A plan of ``engine`` at ``shape`` (one GPU, TP8 on one node, two nodes), from the planner's own argument
    builder; where the planner would choose the other engine for that checkpoint, its record says this engine."""
    gpu_id, checkpoint, per_node, nodes = {
        "1 GPU": ("0x26b9", "r1-distill-qwen-14b", 1, 1),
        "TP8": ("0x2330", "deepseek-r1-awq", 8, 1),
        "two nodes": ("0x20b0", "deepseek-r1-awq", 8, 2),
    }[shape]
    record = {**planner.CHECKPOINTS[checkpoint], "engine": engine}
    cluster = planner.Cluster(gpu_ids.describe_gpu("0x10de", gpu_id), per_node, nodes)
    chosen = planner.plan(cluster, checkpoint)
    # The same arithmetic as the planner's, for the engine asked for.
    rebuilt = planner._plan(
        checkpoint,
        record,
        cluster,
        chosen.tensor_parallel,
        chosen.max_model_len,
        "auto",
        chosen.weights_gib_per_gpu,
        chosen.kv_gib_per_gpu,
    )
    return rebuilt.to_dict()


SHAPES = [(engine, shape) for engine in ("vllm", "sglang") for shape in ("1 GPU", "TP8", "two nodes")]
