"""The inference engines ironserve deploys: each one's pinned image and the CUDA release it is built with, how it is
launched in its container (listen address, API key, multi-node rank and rendezvous), and the rule that an image's
CUDA needs a new enough driver. One home for these facts: the inference role (through filters), preflight and
``ironserve plan`` read them.

Facts from the engines' own sources at the pinned releases (vLLM 0.11.0, SGLang 0.5.3):

- vLLM's image runs ``python3 -m vllm.entrypoints.openai.api_server`` and takes ``--model``; the server reads the
  key from ``VLLM_API_KEY`` when ``--api-key`` is not given (``build_app``); it starts listening only after the model
  loaded, so ``/health`` answering 200 means it serves. A model spanning nodes needs Ray in 0.11.0 (the
  multiprocessing executor is single-node; ``--nnodes`` does not exist there): ``ray start --head`` on rank 0,
  ``ray start --address`` on the others, the server on rank 0 only, and ``VLLM_HOST_IP`` set on every node.
- SGLang reads the key only from its arguments; ``--config <file>.yaml`` is expanded inside Python, so a 0600 file in
  the container keeps it out of ``/proc/<pid>/cmdline`` (SGLang 0.5.3 still logs its arguments at start-up, the key
  among them: the container log is root's only). ``/health_generate`` runs a one-token generation. Across nodes:
  ``--nnodes``, ``--node-rank`` and ``--dist-init-addr`` (rank 0's address); only rank 0 serves the API.
- SGLang's ranks other than 0 serve a stand-in health server (``launch_dummy_health_check_server``: ``/health`` and
  ``/health_generate`` answer 200) on ``--host``/``--port`` once their scheduler joined the group, so the same
  healthcheck proves every rank.
- A custom engine (a site's own build, or the bench's stand-in) spanning nodes gets its place in the environment
  (``CUSTOM_PLACEMENT``: node count, rank, rank 0's rendezvous address, its own data-plane address), and, like
  SGLang, serves ``/health`` on the service address on every rank once the group formed; only rank 0 serves the API.
- NCCL and Gloo read ``NCCL_SOCKET_IFNAME``, ``GLOO_SOCKET_IFNAME`` and ``NCCL_IB_HCA`` themselves (the data network
  role writes them to /etc/ironserve/nccl.env); the container shares the host's network to see those interfaces.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from ironserve import driver_policy


@dataclass(frozen=True)
class Engine:
    image: str
    cuda: str  # the CUDA release the image is built with (its Dockerfile's CUDA_VERSION, major.minor)
    program: tuple[str, ...]
    model_flag: str
    ready_path: str  # the path whose 200 proves the engine serves, not only that its process answers
    # Every flag ironserve passes, as the pinned release declares it (name -> allowed values, None: any value, or
    # True for a switch), and where that declaration is: tests check each rendered launch against it.
    flags: dict
    flags_source: str


ENGINES: dict[str, Engine] = {
    # docker/Dockerfile at v0.11.0: CUDA_VERSION=12.8.1, ENTRYPOINT python3 -m vllm.entrypoints.openai.api_server.
    "vllm": Engine(
        image="vllm/vllm-openai:v0.11.0",
        cuda="12.8",
        program=("python3", "-m", "vllm.entrypoints.openai.api_server"),
        model_flag="--model",
        ready_path="/health",
        flags={
            "--model": None,
            "--served-model-name": None,
            "--host": None,
            "--port": None,
            "--tensor-parallel-size": None,
            "--max-model-len": None,
            "--gpu-memory-utilization": None,
            "--kv-cache-dtype": ("auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc"),
            "--quantization": None,
            "--dtype": ("auto", "half", "float16", "bfloat16", "float", "float32"),
            "--distributed-executor-backend": ("ray", "mp", "uni", "external_launcher"),
        },
        flags_source="vllm 0.11.0: vllm/engine/arg_utils.py (EngineArgs.add_cli_args), "
        "vllm/entrypoints/openai/cli_args.py (FrontendArgs), vllm/config/cache.py (CacheDType)",
    ),
    # The image's tag names its CUDA build (cu129: CUDA 12.9).
    "sglang": Engine(
        image="lmsysorg/sglang:v0.5.3-cu129",
        cuda="12.9",
        program=("python3", "-m", "sglang.launch_server"),
        model_flag="--model-path",
        ready_path="/health_generate",
        flags={
            "--model-path": None,
            "--served-model-name": None,
            "--host": None,
            "--port": None,
            "--tp-size": None,
            "--context-length": None,
            "--mem-fraction-static": None,
            "--kv-cache-dtype": ("auto", "fp8_e5m2", "fp8_e4m3"),
            "--trust-remote-code": True,
            "--config": None,
            "--nnodes": None,
            "--node-rank": None,
            "--dist-init-addr": None,
            "--enable-metrics": True,
        },
        flags_source="sglang 0.5.3: python/sglang/srt/server_args.py (ServerArgs.add_cli_args, prepare_server_args)",
    ),
}
MODEL_DIR = "/models/current"
LAUNCHER = "/ironserve/launch.sh"  # where the launch script sits inside the container
_PORT_FROM_ENVIRONMENT = "IRONSERVE_PORT_FROM_ENVIRONMENT"  # a placeholder shlex leaves unquoted
SGLANG_KEY_FILE = "/run/ironserve-sglang-key.yaml"
# Characters an API key may have: it is written into an environment file and, for SGLang, a YAML file.
API_KEY_PATTERN = re.compile(r"^[A-Za-z0-9._~+/=-]{16,256}$")


def undocumented(engine_name: str, argv: list[str]) -> list[str]:
    """The flags (and values) of an engine's argument list that its pinned release does not declare."""
    declared = engine(engine_name).flags
    problems, index = [], 0
    while index < len(argv):
        flag = argv[index]
        if not flag.startswith("--") or flag not in declared:
            problems.append(f"{flag}: not a flag of {engine_name}'s pinned release")
            index += 1
            continue
        allowed = declared[flag]
        if allowed is True:
            index += 1
            continue
        value = argv[index + 1] if index + 1 < len(argv) else None
        if value is None or (isinstance(allowed, tuple) and value not in allowed):
            problems.append(f"{flag} {value}: not one of {allowed}")
        index += 2
    return problems


class EngineError(ValueError):
    """A setting no engine launch can work with; the message names the variable."""


def engine(name: str) -> Engine:
    if name not in ENGINES:
        raise EngineError(f"unknown engine '{name}'; the planner chooses from {', '.join(sorted(ENGINES))}")
    return ENGINES[name]


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (as URLs, SGLang's --dist-init-addr and Ray's --address take it)."""
    return f"{f'[{host}]' if ':' in host else host}:{port}"


def service_url(host: str, port: int) -> str:
    """The API's base URL on the service address."""
    return f"http://{host_port(host, port)}"


def health_test(
    engine_name: str, host: str, port: int, place: Placement | None = None, rendezvous_port: int = 0
) -> list:
    """The container healthcheck: the engine's readiness path on the service address; on a vLLM rank other than 0,
    which serves no API, whether its Ray node still reaches the head."""
    if engine_name == "vllm" and place is not None and place.rank > 0:
        return ["CMD", "ray", "status", f"--address={host_port(place.head_address, rendezvous_port)}"]
    path = ENGINES[engine_name].ready_path if engine_name in ENGINES else "/health"
    probe = f"import urllib.request; urllib.request.urlopen('{service_url(host, port)}{path}', timeout=20)"
    return ["CMD", "python3", "-c", probe]


def api_key_problem(key: str) -> str | None:
    """Why a key the inventory gives cannot be used (None when it can)."""
    if not key or API_KEY_PATTERN.match(key):
        return None
    return (
        "inference_api_key must be 16 to 256 characters of letters, digits and . _ ~ + / = - (it is written into "
        "an environment file); leave it empty to have one generated on the host"
    )


def _driver_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def driver_problem(image: str, cuda: str, driver_version: str | None, where: str) -> str | None:
    """Why an image built for CUDA ``cuda`` cannot run on ``driver_version`` (None when it can, or when no driver
    version is known: a host without GPUs). The minimum driver of each CUDA release is driver_policy.CUDA_TOOLKITS'.

    Minor-version compatibility (CUDA 12.x on any driver from 525) is not relied on: code that JIT-compiles PTX fails
    on an older driver, as vLLM's kernels were reported to on H100 with 550 (vllm-project/vllm#31700); and NVIDIA's
    forward-compatibility matrix no longer lists branch 550 as a base for CUDA 12.8 or 12.9."""
    if not driver_version:
        return None
    if cuda not in driver_policy.CUDA_TOOLKITS:
        return (
            f"{image}: CUDA release '{cuda}' is not one the rules know ({', '.join(driver_policy.CUDA_TOOLKITS)}); "
            "set inference_image_cuda to the CUDA the image is built with"
        )
    if not re.fullmatch(r"\d+(\.\d+)+", str(driver_version)):
        return f"'{driver_version}' is not an NVIDIA driver version (like 550.163.01)"
    needed = driver_policy.CUDA_TOOLKITS[cuda][0]
    if _driver_tuple(str(driver_version)) >= _driver_tuple(needed):
        return None
    runs = [
        c
        for c, (oldest, _, _) in driver_policy.CUDA_TOOLKITS.items()
        if _driver_tuple(driver_version) >= _driver_tuple(oldest)
    ]
    newest = max(runs, key=lambda c: _driver_tuple(c)) if runs else None
    return (
        f"{image} is built for CUDA {cuda}, which needs NVIDIA driver {needed} or newer; {where} {driver_version}"
        f"{f' (CUDA {newest} at the newest)' if newest else ''}. Set nvidia_driver_source: cuda_repo (NVIDIA's "
        "repository, branch nvidia_driver_cuda_branch) and run the gpu stage first, or set inference_image to an "
        f"image built for CUDA {newest or 'this driver'} or older with inference_image_cuda"
    )


@dataclass(frozen=True)
class Placement:
    """Where one host sits in its engine: rank 0 serves the API; the others join rank 0's rendezvous."""

    nodes: int
    rank: int
    head_address: str  # rank 0's data-plane address ('' on a single node)
    address: str  # this host's data-plane address ('' on a single node)


# The environment a custom engine spanning nodes reads its place from (none on a single node).
CUSTOM_PLACEMENT = ("IRONSERVE_NNODES", "IRONSERVE_NODE_RANK", "IRONSERVE_DIST_INIT_ADDR", "IRONSERVE_NODE_ADDRESS")


def custom_environment(place: Placement, rendezvous_port: int) -> dict[str, str]:
    """What a custom engine spanning nodes is told of its place: the same facts SGLang gets as flags."""
    if place.nodes == 1:
        return {}
    values = (str(place.nodes), str(place.rank), host_port(place.head_address, rendezvous_port), place.address)
    return dict(zip(CUSTOM_PLACEMENT, values, strict=True))


def placement(hosts: list[str], this_host: str, nodes: int, data_addresses: dict[str, str]) -> Placement:
    """This host's rank among the hosts of its engine: the inference hosts in inventory order, in groups of ``nodes``.
    ``data_addresses``: each host's data-plane address (network.data_address, without the prefix length)."""
    if nodes < 1:
        raise EngineError(f"inference_nodes must be 1 or more, not {nodes}")
    if nodes == 1:
        return Placement(1, 0, "", "")
    if len(hosts) % nodes:
        raise EngineError(
            f"inference_nodes is {nodes}, so the inference hosts form engines of {nodes}; there are {len(hosts)} "
            f"({', '.join(hosts)}): add or remove hosts, or change inference_nodes"
        )
    index = hosts.index(this_host)
    group = hosts[index - index % nodes : index - index % nodes + nodes]
    missing = [h for h in group if not data_addresses.get(h)]
    if missing:
        raise EngineError(
            f"an engine spanning {', '.join(group)} rendezvouses over the data network, and {', '.join(missing)} "
            "declare no data-network address: set data_network_subnet and data_network_host_index (or "
            "data_network_address)"
        )
    return Placement(
        nodes, index % nodes, data_addresses[group[0]].split("/")[0], data_addresses[this_host].split("/")[0]
    )


def launch_script(
    engine_name: str,
    engine_args: list[str],
    served_name: str,
    host: str,
    port: int,
    place: Placement,
    rendezvous_port: int,
    gpus_per_node: int,
) -> str:
    """The container's launch script (POSIX sh). The API key arrives in the environment (IRONSERVE_API_KEY, from the
    project's 0600 env file) and leaves it only for the engine's environment or a 0600 file, never an argument."""
    chosen = engine(engine_name)
    argv = [*chosen.program, chosen.model_flag, MODEL_DIR, "--served-model-name", served_name]
    # The port from the environment: every engine of the host (ironserve.scaling's slots) runs this one script.
    argv += ["--host", host, "--port", _PORT_FROM_ENVIRONMENT, *engine_args]
    lines = [
        "#!/bin/sh",
        f"# ironserve: {engine_name}, node {place.rank + 1} of {place.nodes}. Written by the inference role.",
        f"# The API's port: IRONSERVE_PORT from the compose project ({port} for the host's first engine).",
        "set -eu",
        ': "${IRONSERVE_API_KEY:?the project env file gives no API key}"',
        ': "${IRONSERVE_PORT:?the compose project gives no port}"',
    ]
    if place.nodes > 1:
        # The address each engine announces to the others: the data plane's, not whatever a default route finds.
        variable = "VLLM_HOST_IP" if engine_name == "vllm" else "SGLANG_HOST_IP"
        lines.append(f"export {variable}={shlex.quote(place.address)}")
    if engine_name == "vllm":
        lines.append('export VLLM_API_KEY="$IRONSERVE_API_KEY"')
        if place.nodes > 1:
            ray = shlex.quote(host_port(place.head_address, rendezvous_port))
            if place.rank > 0:
                lines.append(
                    f"exec ray start --block --address={ray} --node-ip-address={shlex.quote(place.address)} "
                    f"--num-gpus={gpus_per_node} --disable-usage-stats --include-dashboard=false"
                )
                return "\n".join(lines) + "\n"
            # Ray has no authentication: no dashboard or job API (they would run code as root beside the GPUs);
            # its cluster ports are on the data plane only (the node addresses), which the site keeps private.
            lines += [
                f"ray start --head --port={rendezvous_port} --node-ip-address={shlex.quote(place.address)} "
                f"--num-gpus={gpus_per_node} --disable-usage-stats --include-dashboard=false",
                "# The server places its ranks when it starts: every node must have joined by then.",
                f'until [ "$(python3 -c \'import ray; ray.init(address="auto"); '
                f'print(sum(1 for n in ray.nodes() if n["Alive"]))\' 2>/dev/null)" = {place.nodes} ]; do',
                f'  echo "waiting for {place.nodes} Ray nodes"; sleep 5',
                "done",
            ]
            argv += ["--distributed-executor-backend", "ray"]
    else:
        lines += [
            "umask 077",
            f'printf \'api-key: "%s"\\n\' "$IRONSERVE_API_KEY" > {SGLANG_KEY_FILE}',
        ]
        # /metrics exists only with --enable-metrics (off by default); like /health it needs no API key.
        argv += ["--config", SGLANG_KEY_FILE, "--enable-metrics"]
        if place.nodes > 1:
            argv += [
                "--nnodes",
                str(place.nodes),
                "--node-rank",
                str(place.rank),
                "--dist-init-addr",
                host_port(place.head_address, rendezvous_port),
            ]
    lines.append("exec " + shlex.join(argv).replace(_PORT_FROM_ENVIRONMENT, '"$IRONSERVE_PORT"'))
    return "\n".join(lines) + "\n"


def deployment(
    plan: dict,
    *,
    engine_setting: str,
    image: str,
    image_cuda: str,
    served_name: str,
    host: str,
    port: int,
    hosts: list[str],
    this_host: str,
    nodes: int,
    data_addresses: dict[str, str],
    rendezvous_port: int,
    gpus_per_node: int,
    driver_version: str | None,
    driver_where: str,
    api_key: str,
) -> dict:
    """Everything the inference role renders for one host, or the problems that stop it before any change.

    ``plan``: planner.plan_for_host's (empty for a custom engine); ``engine_setting``: inference_engine;
    ``image``/``image_cuda``: inference_image/inference_image_cuda (empty: the engine's pinned ones)."""
    problems = [p for p in [api_key_problem(api_key)] if p]
    try:
        place = placement(hosts, this_host, nodes, data_addresses)
    except EngineError as exc:
        problems.append(str(exc))
        place = Placement(1, 0, "", "")
    where = {
        "rank": place.rank,
        "nodes": place.nodes,
        # Rank 0's inventory name, for messages that name the group.
        "head": hosts[hosts.index(this_host) - place.rank] if this_host in hosts else this_host,
        # Only rank 0 serves the API; every rank's readiness is its container's healthcheck.
        "serves_api": place.rank == 0,
        "environment": {},
    }
    as_given = {
        "problems": problems,
        "image": image,
        "script": "",
        "launcher": "",
        "ready_path": "/health",
        "url": service_url(host, port),
        "health_test": health_test("custom", host, port),
    }
    if engine_setting == "custom":
        # A site's own engine (or the bench's stand-in): its command as given, /health as its readiness, and its
        # place in the environment when it spans nodes.
        return {**as_given, **where, "engine": "custom", "environment": custom_environment(place, rendezvous_port)}
    if "engine" not in plan:
        return {**as_given, **where, "engine": ""}  # the plan's error stops it
    chosen = engine(plan["engine"])
    image_used, cuda = (image, image_cuda) if image else (chosen.image, chosen.cuda)
    if not cuda:
        problems.append(
            f"inference_image is {image}: set inference_image_cuda to the CUDA release it is built with (like "
            f"{chosen.cuda}), so that it can be checked against the driver"
        )
    else:
        problem = driver_problem(image_used, cuda, driver_version, driver_where)
        if problem:
            problems.append(problem)
    script = launch_script(
        plan["engine"],
        list(plan.get("engine_args", [])),
        served_name,
        host,
        port,
        place,
        rendezvous_port,
        gpus_per_node,
    )
    return {
        **where,
        "problems": problems,
        "engine": plan["engine"],
        "image": image_used,
        "cuda": cuda,
        "script": script,
        "launcher": LAUNCHER,
        "ready_path": chosen.ready_path,
        "url": service_url(host, port),
        "health_test": health_test(plan["engine"], host, port, place, rendezvous_port),
    }
