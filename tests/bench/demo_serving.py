"""The demo lab serving through the front door, with the CPU stand-in engine (the lab has no GPU).

    demo_serving.py stage   before 'ironserve run': the stand-in's image archive and a small model into the bundle
                            the lab machines install from (images/ as 'ironserve bundle images' fills it for an
                            air-gapped site; demo-models/ as a web server of weights would serve them)
    demo_serving.py show    after it: a forward from this machine to the floating address (this machine has no
                            address on the lab's data segment), the curl line a user can paste, and that line run
                            once here, its answer checked

The inventory (inventories/lab/hosts.yml) points the inference and frontend stages at these.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ironserve import paths, run
from ironserve.bundle.images import IMAGES_DIR
from ironserve.lab import lab

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/fixtures/standin-engine"))
import docker_archive  # noqa: E402 - the fixture's folder is not a package

LAB = "demo"
THROUGH = "gpu-a"
LOCAL_PORT = 8443
SHOW_TIMEOUT_SECONDS = 60
MODEL = Path("demo-models/standin-model/rev1")
# Where the front door's role writes the site CA for clients: the run's artifacts (ironserve.run.artifacts_dir).
CA = run.artifacts_dir() / "frontend" / "ca.crt"


def _inference_vars() -> dict:
    hosts = yaml.safe_load((REPO / "inventories/lab/hosts.yml").read_text())
    return hosts["all"]["children"]["inference_servers"]["vars"]


def stage() -> None:
    bundle = paths.bundle_dir()
    entry = docker_archive.write(bundle / IMAGES_DIR)
    print(f"stand-in engine image: {bundle / IMAGES_DIR / entry['file']} ({entry['image_id']})")
    model = bundle / MODEL
    (model / "tokenizer").mkdir(parents=True, exist_ok=True)
    files = {
        "config.json": b'{"architectures": ["StandIn"], "model_type": "standin"}\n',
        "tokenizer/tokenizer.json": b"{}\n",
        # Fixed bytes, so a second stage gives the same files and the hosts keep what they staged.
        "model-00001-of-00001.safetensors": b"".join(
            hashlib.sha256(f"standin {i}".encode()).digest() for i in range(65536)
        ),
    }
    for name, data in files.items():
        (model / name).write_bytes(data)
    (model / "SHA256SUMS").write_text(
        "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
    )
    print(f"stand-in model: {model} ({len(files)} files and SHA256SUMS)")


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def curl_line(address: str, port: int) -> str:
    """What a user pastes here: the key read from a host into curl's header file (never onto a command line)."""
    # Double quotes for this shell, single ones for the machine's: sed gets the script as one argument.
    read_key = (
        f".venv/bin/ironserve lab ssh {LAB} {THROUGH} "
        "\"sed -n 's/^IRONSERVE_API_KEY=\\(.*\\)/Authorization: Bearer \\1/p' /etc/ironserve/inference/api-key.env\""
    )
    body = json.dumps({"model": "deepseek-standin", "prompt": "Hello", "max_tokens": 8})
    return (
        f"curl -sS --fail-with-body --cacert {_shown(CA)} "
        f"--connect-to {address}:{port}:127.0.0.1:{LOCAL_PORT} -H @<({read_key}) "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)} https://{address}:{port}/v1/completions"
    )


def show() -> int:
    variables = _inference_vars()
    address = variables["service_frontend_address"].split("/")[0]
    port = int(variables.get("service_frontend_port", 443))
    lab.forward(LAB, THROUGH, LOCAL_PORT, f"{address}:{port}")  # kept when it already runs
    line = curl_line(address, port)
    # A forward just started may accept before its far end is connected (measured: curl's "Recv failure: Connection
    # reset by peer" at once after make demo, an answer on the next try): asked again until it answers or a minute.
    deadline = time.monotonic() + SHOW_TIMEOUT_SECONDS
    while True:
        answer = subprocess.run(["bash", "-c", line], cwd=REPO, capture_output=True, text=True, timeout=60)
        if answer.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    if answer.returncode != 0:
        print(
            f"the front door did not answer within {SHOW_TIMEOUT_SECONDS} s: {answer.stdout}{answer.stderr}",
            file=sys.stderr,
        )
        return 1
    completion = json.loads(answer.stdout)
    text = completion["choices"][0]["text"]
    print(
        f"\nThe demo lab serves through its front door: https://{address}:{port} (TLS, the site CA in "
        f"{_shown(CA)}), the floating address held by one of gpu-a and gpu-b, the CPU stand-in engine "
        f"behind it (no GPU here; a real site runs vLLM or SGLang). This machine has no address on the lab's data "
        f"segment, so 127.0.0.1:{LOCAL_PORT} is forwarded there through {THROUGH} until 'make demo-down'.\n"
        f"A completion, answered just now ({completion['model']}: {text!r}); paste to ask again:\n\n{line}\n"
    )
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "stage":
        stage()
    elif command == "show":
        sys.exit(show())
    else:
        sys.exit(f"usage: {sys.argv[0]} stage|show")
