"""The inference role's compose project as a real GPU site gets it (the bench runs only the CPU stand-in): the role's
own template, rendered by Ansible on this machine with the engines' own deployment for an H200 host that ran the
network stage, then read back as YAML. Connects nowhere: the play runs on localhost with the local connection."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ironserve_target import gpu_ids
from role_templates import ANSIBLE, render
from shapes import SHAPES, shape_plan

from ironserve import engines, planner, scaling

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "roles" / "inference" / "templates" / "compose.yml.j2"


def _render(tmp_path: Path, plan: dict, rdma: bool, nccl: bool, **deployment) -> dict:
    return yaml.safe_load(render_file(tmp_path, plan, rdma, nccl, **deployment).read_text())["services"]["engine"]


def render_file(tmp_path: Path, plan: dict, rdma: bool, nccl: bool, slot: int = 0, **deployment) -> Path:
    """The role's compose.yml for ``plan`` on gpu-1 (192.0.2.21), written under ``tmp_path``: the host's first engine,
    or with ``slot`` that replica's (the host's slots as the role lays them out, ironserve.scaling)."""
    deploy = engines.deployment(
        plan,
        **{
            "engine_setting": "auto",
            "image": "",
            "image_cuda": "",
            "served_name": plan["repo"],
            "host": "192.0.2.21",
            "port": 8000,
            "hosts": ["gpu-1"],
            "this_host": "gpu-1",
            "nodes": 1,
            "data_addresses": {},
            "rendezvous_port": 20000,
            "gpus_per_node": 8,
            "driver_version": "580.95.05",
            "driver_where": "the driver loaded on gpu-1 is",
            "api_key": "",
            **deployment,
        },
    )
    assert deploy["problems"] == []
    per_engine = plan.get("tensor_parallel", 8) if deployment.get("nodes", 1) == 1 else 8
    count = scaling.slot_count(8, per_engine, deployment.get("nodes", 1), 0)
    variables = {
        "_slot": scaling.slots(deploy, "192.0.2.21", 8000, count, per_engine)[slot],
        "_inference_deploy": deploy,
        "_inference_plan": plan,
        "_inference_engine": deploy["engine"],
        "_inference_image": deploy["image"],
        "_inference_launcher": deploy["launcher"],
        "_inference_name": plan["repo"],
        "_inference_address": "192.0.2.21",
        "_inference_gpus": 8,
        "_inference_nccl": {"stat": {"exists": nccl}},
        "_inference_rdma": {"stat": {"exists": rdma}},
        "inference_port": 8000,
        "inference_command": [],
        "inference_project_dir": "/etc/ironserve/inference",
        "inference_models_dir": "/srv/models",
        "inference_weights_name": "DeepSeek-R1",
        "inference_start_period_seconds": 1800,
    }
    dest = tmp_path / "compose.yml"
    render(tmp_path, {TEMPLATE: dest}, variables)
    return dest


def _h200_plan(checkpoint: str) -> dict:
    cluster = planner.Cluster(gpu_ids.describe_gpu("0x10de", "0x2335"), 8)
    return planner.plan(cluster, checkpoint).to_dict()


@pytest.mark.skipif(ANSIBLE is None, reason="ansible-playbook is not installed")
def test_a_gpu_host_with_rdma_gets_host_network_its_devices_the_gpus_through_cdi_and_its_launcher(tmp_path):
    engine = _render(tmp_path, _h200_plan("deepseek-r1-fp8"), rdma=True, nccl=True)
    assert engine["image"] == "lmsysorg/sglang:v0.5.3-cu129"
    assert engine["pull_policy"] == "never"
    assert (engine["network_mode"], engine["ipc"]) == ("host", "host")
    assert "ports" not in engine
    assert engine["devices"] == ["/dev/infiniband:/dev/infiniband"]
    assert engine["cap_add"] == ["IPC_LOCK"]
    assert engine["ulimits"]["memlock"] == {"soft": -1, "hard": -1}
    assert engine["env_file"] == ["/etc/ironserve/inference/api-key.env", "/etc/ironserve/nccl.env"]
    assert engine["entrypoint"] == ["/bin/sh", engines.LAUNCHER]
    assert f"/etc/ironserve/inference/launch.sh:{engines.LAUNCHER}:ro" in engine["volumes"]
    [gpus] = engine["deploy"]["resources"]["reservations"]["devices"]
    # capabilities: what Debian 13's compose 2.26 requires of a device reservation (the daemon ignores them for cdi)
    assert gpus == {"driver": "cdi", "device_ids": ["nvidia.com/gpu=all"], "capabilities": ["gpu"]}
    health = " ".join(engine["healthcheck"]["test"])
    assert "http://192.0.2.21:8000/health_generate" in health
    assert "command" not in engine
    assert not any("KEY" in name for name in engine["environment"])


@pytest.mark.skipif(ANSIBLE is None, reason="ansible-playbook is not installed")
def test_a_host_without_rdma_or_a_data_network_gets_neither_devices_nor_nccl_settings(tmp_path):
    engine = _render(tmp_path, _h200_plan("r1-distill-llama-70b"), rdma=False, nccl=False)
    assert engine["image"] == "vllm/vllm-openai:v0.11.0"
    assert "devices" not in engine
    assert "cap_add" not in engine
    assert engine["env_file"] == ["/etc/ironserve/inference/api-key.env"]
    assert "http://192.0.2.21:8000/health'" in " ".join(engine["healthcheck"]["test"])


@pytest.mark.skipif(ANSIBLE is None, reason="ansible-playbook is not installed")
@pytest.mark.parametrize(("engine", "shape"), SHAPES)
def test_every_shape_renders_a_project_on_the_host_network_with_its_launcher(tmp_path, engine, shape):
    plan = shape_plan(engine, shape)
    hosts = ["gpu-1", "gpu-2"] if shape == "two nodes" else ["gpu-1"]
    addresses = {"gpu-1": "198.51.100.11/24", "gpu-2": "198.51.100.12/24"}
    for host in hosts:
        folder = tmp_path / host
        folder.mkdir()
        rendered = _render(
            folder, plan, rdma=True, nccl=True, hosts=hosts, this_host=host, nodes=len(hosts), data_addresses=addresses
        )
        assert rendered["image"] == engines.engine(engine).image
        assert (rendered["network_mode"], rendered["ipc"], rendered["entrypoint"]) == (
            "host",
            "host",
            ["/bin/sh", engines.LAUNCHER],
        )
        assert "ports" not in rendered


def test_a_custom_engine_spanning_nodes_finds_its_place_in_the_container_environment(tmp_path):
    engine = _render(
        tmp_path,
        {"repo": "site/engine-model"},
        rdma=True,
        nccl=True,
        engine_setting="custom",
        image="site/engine:1",
        nodes=2,
        hosts=["gpu-1", "gpu-2"],
        this_host="gpu-2",
        data_addresses={"gpu-1": "198.51.100.11/24", "gpu-2": "198.51.100.12/24"},
    )
    environment = engine["environment"]
    assert (environment["IRONSERVE_NNODES"], environment["IRONSERVE_NODE_RANK"]) == ("2", "1")
    assert environment["IRONSERVE_DIST_INIT_ADDR"] == "198.51.100.11:20000"
    assert environment["IRONSERVE_NODE_ADDRESS"] == "198.51.100.12"
    assert engine["network_mode"] == "host"


@pytest.mark.skipif(ANSIBLE is None, reason="ansible-playbook is not installed")
def test_a_replica_gets_its_own_project_port_and_set_of_gpus(tmp_path):
    """The 70B distill fits on fewer than the H200 host's eight GPUs: each slot is an engine of its own. Replica 1 is
    its own compose project (the scale playbook's unit starts it), listens on the next port and gets the next GPUs."""
    plan = _h200_plan("r1-distill-llama-70b")
    per_engine = plan["tensor_parallel"]
    assert 8 // per_engine >= 2, plan
    path = render_file(tmp_path, plan, rdma=False, nccl=False, slot=1)
    project = yaml.safe_load(path.read_text())
    assert project["name"] == "ironserve-inference-replica-1"
    engine = project["services"]["engine"]
    assert engine["environment"]["IRONSERVE_PORT"] == "8001"
    assert "http://192.0.2.21:8001/health" in engine["healthcheck"]["test"][-1]
    [gpus] = engine["deploy"]["resources"]["reservations"]["devices"]
    assert gpus["device_ids"] == [f"nvidia.com/gpu={n}" for n in range(per_engine, 2 * per_engine)]
    first = _render(tmp_path, plan, rdma=False, nccl=False)
    first_ids = first["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
    assert first_ids == [f"nvidia.com/gpu={n}" for n in range(per_engine)]
