"""The inference role with a CPU stand-in engine, on rank 0 (infer-a): compose project under systemd, healthcheck,
API key, restart after a crash, readiness probe, and weights staged from the cold tier's bucket with corruption
refused. The group across both nodes: test_two_nodes.py."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import yaml
from lab_ansible import ansible_module, ansible_playbook
from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
PROJECT = "/etc/ironserve/inference"
RCLONE = "RCLONE_CONFIG=/etc/ironserve/rclone.conf /usr/local/bin/rclone"
PLAYBOOK = SCENARIO.parent.parent / "playbooks/inference.yml"

testinfra_hosts = AnsibleRunner(INVENTORY).get_hosts("gpu_servers")


def _api(host, method: str, path: str, key: str | None, body: dict | None = None) -> tuple[int, dict | str]:
    """One request to the API from the host itself, as a client on the management network makes it."""
    url = json.loads(host.file(f"{PROJECT}/ready.json").content_string)["url"]
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        f"request = urllib.request.Request({url + path!r}, method={method!r}, "
        f"data={json.dumps(body).encode() if body else None!r}, headers={{'Content-Type': 'application/json'}})\n"
        + (f"request.add_header('Authorization', 'Bearer ' + {key!r})\n" if key else "")
        + "try:\n    response = urllib.request.urlopen(request, timeout=20); print(response.status); "
        "print(response.read().decode())\n"
        "except urllib.error.HTTPError as error:\n    print(error.code); print(error.read().decode())\n"
    )
    out = host.check_output(f"python3 -c {shlex.quote(script)}")
    status, _, text = out.partition("\n")
    try:
        return int(status), json.loads(text)
    except ValueError:
        return int(status), text


def _key(host) -> str:
    return host.file(f"{PROJECT}/api-key.env").content_string.strip().split("=", 1)[1]


def _container(host) -> dict:
    name = host.check_output("docker compose -f /etc/ironserve/inference/compose.yml ps -q engine")
    return json.loads(host.check_output(f"docker inspect {name}"))[0]


def _wait_healthy(host, seconds: int = 240) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        state = _container(host)["State"]
        if state.get("Health", {}).get("Status") == "healthy":
            return state
        assert time.monotonic() < deadline, json.dumps(state)
        time.sleep(5)


def test_the_unit_owns_the_compose_project(host):
    assert host.service("ironserve-inference").is_enabled
    assert host.service("ironserve-inference").is_running
    config = yaml.safe_load(host.check_output(f"docker compose -f {PROJECT}/compose.yml config"))
    engine = config["services"]["engine"]
    assert engine["image"] == "ironserve/standin-engine:1"
    assert engine["ipc"] == "host"
    assert engine["ulimits"]["memlock"] == {"soft": -1, "hard": -1}
    assert engine["environment"]["HF_HUB_OFFLINE"] == "1"
    assert engine["restart"] == "unless-stopped"
    assert engine["healthcheck"]["start_period"] == "1m0s"
    [volume] = engine["volumes"]
    assert (volume["source"], volume["target"], volume["read_only"]) == ("/srv/models/standin-model", "/models", True)
    # The host's network (the data plane's interfaces for NCCL), the engine told where to listen.
    assert engine["network_mode"] == "host"
    assert "ports" not in engine
    assert (engine["environment"]["IRONSERVE_HOST"], engine["environment"]["IRONSERVE_PORT"]) == ("10.0.2.15", "8000")


def test_nccl_inside_the_engine_names_a_data_plane_interface_it_can_see(host):
    # On a bridge network the container would see only its own eth0, not the data NIC nccl.env names.
    container = _container(host)["Id"]
    probe = (
        "import os; name = os.environ['NCCL_SOCKET_IFNAME']; "
        "print(name, os.environ['GLOO_SOCKET_IFNAME'] == name, os.path.exists('/sys/class/net/' + name))"
    )
    name, same, seen = host.check_output(f"docker exec {container} python3 -c {shlex.quote(probe)}").split()
    assert (same, seen) == ("True", "True"), name
    assert host.file(f"/sys/class/net/{name}").exists
    assert f"NCCL_SOCKET_IFNAME={name}" in host.file("/etc/ironserve/nccl.env").content_string


def test_the_api_listens_on_the_service_address_only(host):
    listening = host.check_output("ss -Hltn 'sport = :8000'").split()
    assert "10.0.2.15:8000" in listening
    assert not [word for word in listening if word.endswith(":8000") and word != "10.0.2.15:8000"], listening
    refused = host.run("python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')\"")
    assert refused.rc != 0
    assert "Connection refused" in refused.stderr


def test_the_api_key_is_in_no_process_command_line(host):
    # Read on the host, so that the key is not on this check's own command line either.
    script = (
        "import os\n"
        f"key = open('{PROJECT}/api-key.env').read().strip().split('=', 1)[1]\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        argv = open(f'/proc/{pid}/cmdline', 'rb').read().decode(errors='replace').split(chr(0))\n"
        "    except OSError:\n"
        "        continue\n"
        "    if any(key in word for word in argv):\n"
        "        print(pid, argv[0])\n"
    )
    assert host.check_output(f"python3 -c {shlex.quote(script)}") == ""
    engine = host.check_output(f"docker inspect --format '{{{{.State.Pid}}}}' {_container(host)['Id']}")
    assert "/standin/server.py" in host.file(f"/proc/{engine}/cmdline").content_string.replace("\0", " ")


def test_every_shape_of_a_real_site_renders_a_project_this_docker_compose_accepts(host, tmp_path):
    # The role's template for vLLM and SGLang at one GPU, TP8 and two nodes (rendered here by Ansible, as the
    # unit tests do), checked by the machine's own docker compose: the GPUs' CDI request, host network, RDMA.
    # Every project is rendered first and copied in one transfer, then checked in one session: each copy and each
    # command is a round trip to a TCG guest (this test took 177 s with one of each per project).
    from shapes import SHAPES, shape_plan
    from test_inference_render import _h200_plan, render_file

    projects = tmp_path / "shapes"
    projects.mkdir()
    for engine, shape in SHAPES:
        name = f"{engine}-{shape.replace(' ', '-')}"
        folder = tmp_path / name
        folder.mkdir()
        hosts = ["gpu-1", "gpu-2"] if shape == "two nodes" else ["gpu-1"]
        addresses = {"gpu-1": "198.51.100.11/24", "gpu-2": "198.51.100.12/24"}
        # No nccl.env on this machine (no data network stage here): compose config reads the env files.
        rendered = render_file(
            folder,
            shape_plan(engine, shape),
            rdma=True,
            nccl=False,
            hosts=hosts,
            nodes=len(hosts),
            data_addresses=addresses,
        )
        (projects / f"{name}.yml").write_text(rendered.read_text())
    # A replica's project as scaling starts it (ironserve.scaling: its own name, port and set of GPUs).
    folder = tmp_path / "replica"
    folder.mkdir()
    rendered = render_file(folder, _h200_plan("r1-distill-llama-70b"), rdma=True, nccl=False, slot=1)
    (projects / "replica-1.yml").write_text(rendered.read_text())
    names = sorted(path.stem for path in projects.glob("*.yml"))
    assert len(names) == len(SHAPES) + 1, names

    host.check_output("rm -rf /tmp/shapes")
    copied = host.ansible("copy", f"src={projects}/ dest=/tmp/shapes/ mode=0600", check=False)
    assert not copied.get("failed"), copied
    # One line per project: its name and docker compose's exit code, then what it said on error.
    check = (
        'for f in /tmp/shapes/*.yml; do n=$(basename "$f" .yml); '
        'if out=$(docker compose -f "$f" config --quiet 2>&1); then echo "$n 0"; '
        "else echo \"$n 1 $out\" | tr '\\n' ' '; echo; fi; done"
    )
    verdicts = dict(line.split(" ", 1) for line in host.check_output(check).splitlines())
    assert sorted(verdicts) == names, verdicts
    refused = {name: verdict for name, verdict in verdicts.items() if verdict != "0"}
    assert refused == {}, refused
    result = host.run("docker compose -f /tmp/shapes/replica-1.yml config --format json")
    assert result.rc == 0, f"replica 1: {result.stderr}"
    assert json.loads(result.stdout)["name"] == "ironserve-inference-replica-1"


def test_the_healthcheck_reports_healthy(host):
    _wait_healthy(host)


def test_requests_without_the_api_key_are_refused(host):
    assert _api(host, "GET", "/v1/models", None)[0] == 401
    assert _api(host, "GET", "/v1/models", "wrong-key")[0] == 401
    status, models = _api(host, "GET", "/v1/models", _key(host))
    assert status == 200
    assert [m["id"] for m in models["data"]] == ["deepseek-standin"]
    assert _api(host, "GET", "/health", None)[0] == 200
    assert "vllm:num_requests_running" in _api(host, "GET", "/metrics", None)[1]


def test_the_api_key_is_private_and_never_in_the_project_file(host):
    env = host.file(f"{PROJECT}/api-key.env")
    assert (env.user, env.mode) == ("root", 0o600)
    assert len(_key(host)) > 30
    assert _key(host) not in host.file(f"{PROJECT}/compose.yml").content_string


def test_the_readiness_probe_completes_one_token(host):
    out = host.check_output("/usr/local/sbin/ironserve-inference-ready")
    assert out.startswith("ready: deepseek-standin at http://10.0.2.15:8000 completed 1 token(s)")


def test_weights_came_from_the_cold_tier_verified_and_read_only(host):
    current = host.file("/srv/models/standin-model/current")
    assert current.is_symlink
    assert current.linked_to == "/srv/models/standin-model/rev1"
    assert host.file("/srv/models/standin-model/rev1/.ironserve-verified").exists
    # Checked against the manifest the model was uploaded with (prepare.yml kept it in /root/model).
    local = host.check_output(
        "cd /srv/models/standin-model/rev1 && sha256sum -c /root/model/SHA256SUMS --quiet && echo ok"
    )
    assert local == "ok"
    container = _container(host)
    assert (
        host.check_output(
            f"docker exec {container['Id']} python3 -c \"import os; print(os.access('/models/current', os.W_OK))\""
        )
        == "False"
    )


def test_the_engine_comes_back_after_a_crash(host):
    before = _container(host)
    host.check_output(f"kill -9 {before['State']['Pid']}")
    deadline = time.monotonic() + 120
    while _container(host)["RestartCount"] == before["RestartCount"]:
        assert time.monotonic() < deadline, "the engine was not restarted after being killed"
        time.sleep(3)
    _wait_healthy(host)
    assert host.run("/usr/local/sbin/ironserve-inference-ready").rc == 0


def test_the_image_was_loaded_from_the_archive_checked_and_the_archive_removed(host):
    # prepare.yml saved the image, served it as an image archive (images.json with its ID, as 'ironserve bundle
    # images' records it) and removed it: this is the image it saved, and the role checked its ID after loading.
    loaded = host.check_output("docker image inspect --format '{{.Id}}' ironserve/standin-engine:1")
    assert loaded == host.file("/root/standin-image-id").content_string.strip()
    assert host.file("/srv/models/.images").mode == 0o700
    assert host.check_output("ls -A /srv/models/.images") == ""


def test_an_image_the_archives_do_not_list_is_named_before_any_change(host):
    compose = host.file(f"{PROJECT}/compose.yml").content_string
    result = ansible_playbook(
        INVENTORY, PLAYBOOK, {"inference_image": "ironserve/standin-engine:absent"}, limit="infer-a"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert (
        "ironserve/standin-engine:absent is not on infer-a, and the image archives at http://127.0.0.1:8099/ do not "
        "list it: run ironserve bundle images --image ironserve/standin-engine:absent"
    ) in output
    assert host.file(f"{PROJECT}/compose.yml").content_string == compose
    assert host.run("/usr/local/sbin/ironserve-inference-ready").rc == 0


def test_a_corrupted_weight_file_in_the_bucket_is_refused(host):
    host.check_output(
        "set -e; rm -rf /root/model2; cp -r /root/model /root/model2;"
        " head -c 3000000 /dev/urandom > /root/model2/model-00001-of-00002.safetensors;"
        f" {RCLONE} copy /root/model2 cold:models/standin-model/rev2"
    )
    result = ansible_playbook(
        INVENTORY,
        PLAYBOOK,
        {"inference_weights_source": "s3://models/standin-model/rev2", "inference_weights_revision": "rev2"},
        limit="infer-a",
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "model-00001-of-00002.safetensors: sha256" in output
    assert "does not match the manifest's" in output
    assert host.file("/srv/models/standin-model/current").linked_to == "/srv/models/standin-model/rev1"
    assert not host.file("/srv/models/standin-model/rev2").exists
    assert host.run("/usr/local/sbin/ironserve-inference-ready").rc == 0


def _seconds(host, command: str) -> float:
    """How long ``command`` takes on the host, timed there."""
    timer = f"import subprocess, time; t = time.monotonic(); subprocess.run({command!r}, shell=True, check=True); "
    return float(host.check_output(f"python3 -c {shlex.quote(timer + 'print(time.monotonic() - t)')}"))


def test_weight_staging_against_a_plain_rclone_copy_of_the_same_files(host):
    # Side by side in one run: the files in the bucket, copied by rclone (the floor: one read, checksums compared)
    # and staged by the module as the role stages them (fetched in parallel, hashed as they arrive, verified).
    host.check_output(
        "set -e; rm -rf /root/bench /root/bench-rclone /srv/models/bench && mkdir /root/bench && cd /root/bench;"
        " for i in 1 2 3 4; do head -c 16777216 /dev/urandom > part-$i.safetensors; done;"
        f" sha256sum part-* > SHA256SUMS; {RCLONE} copy /root/bench cold:models/bench/r1;"
        # The staged folder holds the files, not the manifest: keep it here to check them against.
        " mv SHA256SUMS /root/bench-SHA256SUMS; rm -rf /root/bench"
    )
    rclone = _seconds(host, f"{RCLONE} copy cold:models/bench/r1 /root/bench-rclone")
    host.check_output("rm -rf /root/bench-rclone")  # the root disk holds the bucket too
    args = "source=s3://models/bench/r1 dest=/srv/models name=bench revision=r1 s3_endpoint=http://10.0.2.15:8333"
    started = time.monotonic()
    [staged] = ansible_module(INVENTORY, "infer-a", "ironserve_weights", args).values()
    staging = time.monotonic() - started
    started = time.monotonic()
    [again] = ansible_module(INVENTORY, "infer-a", "ironserve_weights", args).values()
    overhead = time.monotonic() - started  # the same call with nothing to do: Ansible's own cost
    assert (staged["changed"], len(staged["fetched_files"]), staged["fetched_bytes"]) == (True, 4, 4 * 16777216)
    assert (again["changed"], again["kept_files"]) == (False, 4)
    checked = "cd /srv/models/bench/current && sha256sum -c --quiet /root/bench-SHA256SUMS && echo ok"
    assert host.check_output(checked) == "ok"
    table = (
        "| 64 MiB in 4 files from the cold tier's bucket | seconds |\n|---|---|\n"
        f"| rclone copy (the floor) | {rclone:.1f} |\n| ironserve_weights, first run | {staging:.1f} |\n"
        f"| ironserve_weights, nothing to do (Ansible's own cost) | {overhead:.1f} |\n"
        f"| ratio staging / rclone; without Ansible's cost | {staging / rclone:.2f}; "
        f"{(staging - overhead) / rclone:.2f} |\n"
    )
    out = SCENARIO.parents[1] / "artifacts" / "bench" / "weights-staging.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table)
    host.check_output("rm -rf /srv/models/bench /root/bench-SHA256SUMS")
