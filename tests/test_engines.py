"""The engines' launch scripts, run under sh with stand-ins for python3 and ray that record what they were given:
the API key never on a command line, the listen address and port, ranks and rendezvous across nodes; and the rule
that an engine image's CUDA needs a new enough driver."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from ironserve_target import gpu_ids
from shapes import SHAPES, shape_plan

from ironserve import driver_policy, engines, planner

KEY = "is-0123456789abcdefghijklmnopqrstuvwxyzABCD"
RECORDER = """#!/usr/bin/python3
import json, os, sys
if sys.argv[1:2] == ["-c"]:  # the Ray head's wait for its nodes
    print(os.environ["STANDIN_RAY_NODES"])
    sys.exit(0)
with open(os.environ["STANDIN_RECORD"], "a") as out:
    out.write(json.dumps({"program": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
                          "vllm_key": os.environ.get("VLLM_API_KEY"), "vllm_ip": os.environ.get("VLLM_HOST_IP"),
                          "sglang_ip": os.environ.get("SGLANG_HOST_IP")}) + "\\n")
"""


def _run(tmp_path: Path, script: str, ray_nodes: int = 1, port: str = "8000") -> list[dict]:
    """Run a launch script with python3 and ray recording their calls; the key and the port only in the environment
    (the compose project's)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for program in ("python3", "ray"):
        (bin_dir / program).write_text(RECORDER)
        (bin_dir / program).chmod(0o755)
    key_file = tmp_path / "sglang-key.yaml"
    launch = tmp_path / "launch.sh"
    launch.write_text(script.replace(engines.SGLANG_KEY_FILE, str(key_file)))
    record = tmp_path / "record.jsonl"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "IRONSERVE_API_KEY": KEY,
        "IRONSERVE_PORT": port,
        "STANDIN_RECORD": str(record),
        "STANDIN_RAY_NODES": str(ray_nodes),
    }
    subprocess.run(["sh", str(launch)], env=env, check=True, capture_output=True, text=True, timeout=30)
    return [json.loads(line) for line in record.read_text().splitlines()]


def _plan(engine: str, nodes: int = 1) -> dict:
    """The planner's own plans: DeepSeek-R1 FP8 on SGLang (H200), the 70B distill on vLLM (H200), and across two
    nodes R1 AWQ on vLLM (A100 40GB)."""
    checkpoint, device = {
        ("sglang", 1): ("deepseek-r1-fp8", "0x2335"),
        ("sglang", 2): ("deepseek-r1-fp8", "0x2330"),
        ("vllm", 1): ("r1-distill-llama-70b", "0x2335"),
        ("vllm", 2): ("deepseek-r1-awq", "0x20b0"),
    }[engine, nodes]
    plan = planner.plan(planner.Cluster(gpu_ids.describe_gpu("0x10de", device), 8, nodes), checkpoint).to_dict()
    assert (plan["engine"], plan["nodes"]) == (engine, nodes)
    return plan


SINGLE = engines.Placement(1, 0, "", "")


def test_vllm_gets_the_key_from_its_environment_and_listens_on_the_service_address(tmp_path):
    script = engines.launch_script(
        "vllm", ["--tensor-parallel-size", "8"], "deepseek-r1", "192.0.2.10", 8000, SINGLE, 20000, 8
    )
    [call] = _run(tmp_path, script)
    assert call["argv"][:2] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert call["argv"][2:4] == ["--model", "/models/current"]
    argv = " ".join(call["argv"])
    assert "--host 192.0.2.10 --port 8000" in argv
    assert "--served-model-name deepseek-r1" in argv
    assert "--tensor-parallel-size 8" in argv
    assert KEY not in argv
    assert "--api-key" not in argv
    assert call["vllm_key"] == KEY
    assert KEY not in script


def test_sglang_gets_the_key_from_a_private_config_file_never_its_arguments(tmp_path):
    script = engines.launch_script("sglang", ["--tp-size", "8"], "deepseek-r1", "192.0.2.10", 8000, SINGLE, 20000, 8)
    [call] = _run(tmp_path, script)
    assert call["argv"][:2] == ["-m", "sglang.launch_server"]
    argv = call["argv"]
    assert KEY not in " ".join(argv)
    config = Path(argv[argv.index("--config") + 1])
    assert yaml.safe_load(config.read_text()) == {"api-key": KEY}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert argv[argv.index("--host") + 1 : argv.index("--host") + 4] == ["192.0.2.10", "--port", "8000"]
    assert "--nnodes" not in argv
    # SGLang serves /metrics only when asked (the monitoring stage scrapes it).
    assert "--enable-metrics" in argv


def test_every_engine_of_a_host_runs_the_one_script_on_its_own_port(tmp_path):
    script = engines.launch_script("vllm", [], "m", "192.0.2.10", 8000, SINGLE, 20000, 8)
    [call] = _run(tmp_path, script, port="8002")
    assert "--host 192.0.2.10 --port 8002" in " ".join(call["argv"])
    launch = tmp_path / "launch.sh"
    env = {"PATH": "/usr/bin:/bin", "IRONSERVE_API_KEY": KEY}
    result = subprocess.run(["sh", str(launch)], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "the compose project gives no port" in result.stderr


def test_a_launch_without_a_key_in_its_environment_refuses_to_start(tmp_path):
    script = engines.launch_script("vllm", [], "m", "192.0.2.10", 8000, SINGLE, 20000, 8)
    launch = tmp_path / "launch.sh"
    launch.write_text(script)
    result = subprocess.run(["sh", str(launch)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode != 0
    assert "the project env file gives no API key" in result.stderr


def test_sglang_across_two_nodes_gives_each_its_rank_and_rank_0s_rendezvous(tmp_path):
    hosts = ["gpu-1", "gpu-2"]
    addresses = {"gpu-1": "198.51.100.11/24", "gpu-2": "198.51.100.12/24"}
    calls = []
    for host in hosts:
        place = engines.placement(hosts, host, 2, addresses)
        script = engines.launch_script("sglang", ["--tp-size", "16"], "r1", "192.0.2.10", 8000, place, 20000, 8)
        folder = tmp_path / host
        folder.mkdir()
        [call] = _run(folder, script)
        calls.append(call)
    for rank, (host, call) in enumerate(zip(hosts, calls, strict=True)):
        argv = call["argv"]
        assert argv[argv.index("--nnodes") + 1] == "2"
        assert argv[argv.index("--node-rank") + 1] == str(rank)
        assert argv[argv.index("--dist-init-addr") + 1] == "198.51.100.11:20000"
        assert call["sglang_ip"] == addresses[host].split("/")[0]


def test_vllm_across_two_nodes_runs_a_ray_cluster_and_serves_from_rank_0_once_both_joined(tmp_path):
    hosts = ["gpu-1", "gpu-2"]
    addresses = {"gpu-1": "198.51.100.11/24", "gpu-2": "198.51.100.12/24"}
    head = engines.placement(hosts, "gpu-1", 2, addresses)
    worker = engines.placement(hosts, "gpu-2", 2, addresses)
    (tmp_path / "head").mkdir()
    (tmp_path / "worker").mkdir()
    head_calls = _run(tmp_path / "head", engines.launch_script("vllm", [], "r1", "192.0.2.10", 8000, head, 6380, 8), 2)
    worker_calls = _run(
        tmp_path / "worker", engines.launch_script("vllm", [], "r1", "192.0.2.10", 8000, worker, 6380, 8)
    )
    ray, server = head_calls
    assert (ray["program"], ray["argv"][:3]) == ("ray", ["start", "--head", "--port=6380"])
    assert "--node-ip-address=198.51.100.11" in ray["argv"]
    assert server["argv"][:2] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert server["argv"][-2:] == ["--distributed-executor-backend", "ray"]
    assert server["vllm_ip"] == "198.51.100.11"
    [joined] = worker_calls
    assert joined["program"] == "ray"
    assert joined["argv"][:3] == ["start", "--block", "--address=198.51.100.11:6380"]
    assert "--node-ip-address=198.51.100.12" in joined["argv"]
    assert joined["vllm_ip"] == "198.51.100.12"


def test_placement_refuses_hosts_that_do_not_divide_into_engines_or_lack_a_data_address():
    with pytest.raises(engines.EngineError, match=r"there are 3 .*change inference_nodes"):
        engines.placement(["a", "b", "c"], "a", 2, {"a": "x", "b": "y", "c": "z"})
    with pytest.raises(engines.EngineError, match="b declare no data-network address: set data_network_subnet"):
        engines.placement(["a", "b"], "b", 2, {"a": "198.51.100.1/24", "b": ""})
    assert engines.placement(["a", "b", "c", "d"], "d", 2, dict.fromkeys("abcd", "198.51.100.1/24")).rank == 1


def test_an_image_built_for_a_newer_cuda_than_the_driver_runs_is_named_with_the_fix():
    problem = engines.driver_problem("vllm/vllm-openai:v0.11.0", "12.8", "550.163.01", "the gpu stage installs driver")
    assert problem == (
        "vllm/vllm-openai:v0.11.0 is built for CUDA 12.8, which needs NVIDIA driver 570.26 or newer; the gpu stage "
        "installs driver 550.163.01 (CUDA 12.4 at the newest). Set nvidia_driver_source: cuda_repo (NVIDIA's "
        "repository, branch nvidia_driver_cuda_branch) and run the gpu stage first, or set inference_image to an "
        "image built for CUDA 12.4 or older with inference_image_cuda"
    )
    assert engines.driver_problem("lmsysorg/sglang:v0.5.3-cu129", "12.9", "580.95.05", "x") is None
    assert engines.driver_problem("any", "12.9", "", "x") is None  # no driver known: a host without GPUs
    assert "not one the rules know" in engines.driver_problem("any", "11.8", "550.163.01", "x")
    assert "not an NVIDIA driver version" in engines.driver_problem("any", "12.8", "five-fifty", "x")


def _deployment(plan: dict, **changes) -> dict:
    settings = {
        "engine_setting": "auto",
        "image": "",
        "image_cuda": "",
        "served_name": "deepseek-ai/DeepSeek-R1",
        "host": "192.0.2.10",
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
    }
    return engines.deployment(plan, **{**settings, **changes})


def test_the_deployment_of_the_planned_engine_on_its_pinned_image():
    plan = _plan("vllm")
    deployed = _deployment(plan)
    assert deployed["problems"] == []
    assert (deployed["engine"], deployed["image"], deployed["cuda"]) == ("vllm", "vllm/vllm-openai:v0.11.0", "12.8")
    assert deployed["ready_path"] == "/health"
    assert deployed["launcher"] == engines.LAUNCHER
    assert '--host 192.0.2.10 --port "$IRONSERVE_PORT"' in deployed["script"]
    assert _deployment(_plan("sglang"))["ready_path"] == "/health_generate"


def test_the_deployment_lists_every_problem_before_any_change():
    plan = _plan("vllm")
    problems = _deployment(plan, driver_version="550.163.01", api_key="short key")["problems"]
    assert len(problems) == 2
    assert problems[0].startswith("inference_api_key must be 16 to 256 characters")
    assert "needs NVIDIA driver 570.26 or newer; the driver loaded on gpu-1 is 550.163.01" in problems[1]
    own_image = _deployment(plan, image="mirror.example/vllm@sha256:" + "0" * 64)["problems"]
    assert own_image == [
        f"inference_image is mirror.example/vllm@sha256:{'0' * 64}: set inference_image_cuda to the CUDA release "
        "it is built with (like 12.8), so that it can be checked against the driver"
    ]
    assert (
        _deployment(plan, image="mirror.example/vllm:cu126", image_cuda="12.6", driver_version="560.35.03")["problems"]
        == []
    )
    assert _deployment(plan, nodes=2, hosts=["gpu-1"])["problems"][0].startswith("inference_nodes is 2")


def test_a_custom_engine_runs_its_own_command_and_a_failed_plan_deploys_nothing():
    custom = _deployment({}, engine_setting="custom", image="site/engine:1")
    assert (custom["engine"], custom["script"], custom["ready_path"], custom["problems"]) == (
        "custom",
        "",
        "/health",
        [],
    )
    failed = _deployment({"error": "nothing fits"})
    assert (failed["engine"], failed["script"]) == ("", "")


def test_a_custom_engine_spanning_nodes_gets_its_place_in_its_environment_and_only_rank_0_serves():
    hosts = ["gpu-1", "gpu-2"]
    addresses = {"gpu-1": "198.51.100.11/24", "gpu-2": "198.51.100.12/24"}
    head, member = (
        _deployment({}, engine_setting="custom", nodes=2, hosts=hosts, this_host=host, data_addresses=addresses)
        for host in hosts
    )
    assert (head["problems"], member["problems"]) == ([], [])
    assert (head["rank"], head["serves_api"], member["rank"], member["serves_api"]) == (0, True, 1, False)
    assert head["head"] == member["head"] == "gpu-1"
    assert member["environment"] == {
        "IRONSERVE_NNODES": "2",
        "IRONSERVE_NODE_RANK": "1",
        "IRONSERVE_DIST_INIT_ADDR": "198.51.100.11:20000",
        "IRONSERVE_NODE_ADDRESS": "198.51.100.12",
    }
    assert _deployment({}, engine_setting="custom")["environment"] == {}
    missing = _deployment({}, engine_setting="custom", nodes=2, hosts=hosts, data_addresses={"gpu-1": "x"})
    assert "gpu-2 declare no data-network address" in missing["problems"][0]


def test_rendezvous_addresses_on_ipv6_data_planes_are_bracketed():
    hosts = ["gpu-1", "gpu-2"]
    place = engines.placement(hosts, "gpu-2", 2, {"gpu-1": "2001:db8::11/64", "gpu-2": "2001:db8::12/64"})
    assert engines.custom_environment(place, 20000)["IRONSERVE_DIST_INIT_ADDR"] == "[2001:db8::11]:20000"
    script = engines.launch_script("sglang", [], "r1", "2001:db8:1::10", 8000, place, 20000, 8)
    assert "--dist-init-addr '[2001:db8::11]:20000'" in script
    assert engines.service_url("2001:db8:1::10", 8000) == "http://[2001:db8:1::10]:8000"


def test_the_planner_leaves_ranks_and_rendezvous_to_the_launch():
    for engine in ("vllm", "sglang"):
        args = _plan(engine, nodes=2)["engine_args"]
        assert not {"--nnodes", "--distributed-executor-backend", "--node-rank"} & set(args)


def test_every_pinned_image_names_a_cuda_release_the_driver_rules_know():
    for chosen in engines.ENGINES.values():
        assert chosen.cuda in driver_policy.CUDA_TOOLKITS
        assert ":" in chosen.image
    assert os.path.isabs(engines.LAUNCHER)


@pytest.mark.parametrize(("engine", "shape"), SHAPES)
def test_every_flag_of_every_shape_is_one_the_pinned_release_declares(engine, shape):
    plan = shape_plan(engine, shape)
    hosts = ["gpu-1", "gpu-2"] if shape == "two nodes" else ["gpu-1"]
    addresses = {"gpu-1": "198.51.100.11/24", "gpu-2": "198.51.100.12/24"}
    expected_tp = {"1 GPU": "1", "TP8": "8", "two nodes": "16"}[shape]
    for host in hosts:
        deployed = _deployment(plan, hosts=hosts, this_host=host, nodes=len(hosts), data_addresses=addresses)
        assert deployed["problems"] == []
        exec_line = deployed["script"].rstrip("\n").splitlines()[-1]
        argv = shlex.split(exec_line.removeprefix("exec "))
        if argv[0] == "ray":  # a vLLM worker node joins the head's Ray cluster and runs no server of its own
            assert (engine, host) == ("vllm", "gpu-2")
            continue
        program = engines.engine(engine).program
        assert tuple(argv[: len(program)]) == program
        flags = argv[len(program) :]
        assert engines.undocumented(engine, flags) == []
        tensor_parallel = "--tensor-parallel-size" if engine == "vllm" else "--tp-size"
        assert flags[flags.index(tensor_parallel) + 1] == expected_tp


def test_a_flag_or_value_the_release_does_not_declare_is_named():
    assert engines.undocumented("sglang", ["--tp", "8", "--kv-cache-dtype", "fp8", "--trust-remote-code"]) == [
        "--tp: not a flag of sglang's pinned release",
        "8: not a flag of sglang's pinned release",
        "--kv-cache-dtype fp8: not one of ('auto', 'fp8_e5m2', 'fp8_e4m3')",
    ]
