"""On a lent GPU machine: each pinned engine image against the loaded driver, and, only when Docker, an engine image
and a DeepSeek distill's weights are already there (this pulls and downloads nothing), one engine served from them
on one GPU the way the inference role launches it: a one-token readiness, a completion and its tokens per second.

Usage (repository root): python3 tools/gpu-engine-check.py OUT_DIR; exit 0 unless a check that could run failed.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.join(os.getcwd(), "module_utils"))  # ironserve_target, which ironserve imports
sys.path.insert(0, os.getcwd())
from ironserve import engines

PORT = 18000
KEY = "is-gpu-engine-check-" + os.urandom(8).hex()


def loaded_driver() -> str | None:
    try:
        line = Path("/proc/driver/nvidia/version").read_text().splitlines()[0]
    except OSError:
        return None
    return next((word for word in line.split() if word.count(".") >= 1 and word.replace(".", "").isdigit()), None)


def local_image(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def smallest_distill() -> str | None:
    """A DeepSeek-R1 distill's snapshot already in a Hugging Face cache on this machine (smallest first)."""
    roots = [os.path.expanduser("~/.cache/huggingface/hub"), "/root/.cache/huggingface/hub", "/models", "/srv/models"]
    for size in ("1.5B", "7B", "8B", "14B"):
        for root in roots:
            for config in sorted(
                glob.glob(f"{root}/models--deepseek-ai--DeepSeek-R1-Distill-*{size}*/snapshots/*/config.json")
            ):
                return os.path.dirname(config)
    return None


def serve(engine_name: str, model: str, out: str) -> list[str]:
    """Run the engine in the role's shape (host network, ipc host, key from the environment) and time a completion."""
    plan_args = {"vllm": ["--max-model-len", "4096"], "sglang": ["--context-length", "4096"]}[engine_name]
    script = engines.launch_script(
        engine_name, plan_args, "distill", "127.0.0.1", PORT, engines.Placement(1, 0, "", ""), 0, 1
    )
    folder = tempfile.mkdtemp(prefix="gpu-engine-check-")
    Path(folder, "launch.sh").write_text(script)
    name = f"gpu-engine-check-{engine_name}"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    run = [
        "docker", "run", "--detach", "--name", name, "--gpus", "device=0", "--network", "host", "--ipc", "host",
        "--env", f"IRONSERVE_API_KEY={KEY}", "--env", "HF_HUB_OFFLINE=1",
        "--volume", f"{model}:/models/current:ro", "--volume", f"{folder}/launch.sh:{engines.LAUNCHER}:ro",
        "--entrypoint", "/bin/sh", engines.ENGINES[engine_name].image, engines.LAUNCHER,
    ]  # fmt: skip
    started = subprocess.run(run, capture_output=True, text=True)
    if started.returncode != 0:
        return [f"{engine_name}: docker run failed: {started.stderr.strip()[-500:]}"]
    try:
        health = engines.service_url("127.0.0.1", PORT) + engines.ENGINES[engine_name].ready_path
        deadline, began = time.monotonic() + 900, time.monotonic()
        while True:
            try:
                urllib.request.urlopen(health, timeout=20).read()  # noqa: S310 - http://127.0.0.1 only
                break
            except OSError:
                if time.monotonic() > deadline:
                    return [f"{engine_name}: not ready after 900 s ({health})"]
                time.sleep(5)
        ready_seconds = time.monotonic() - began
        body = json.dumps({"model": "distill", "prompt": "The capital of France is", "max_tokens": 128}).encode()
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            engines.service_url("127.0.0.1", PORT) + "/v1/completions",
            data=body,
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        )
        began = time.monotonic()
        answer = json.load(urllib.request.urlopen(request, timeout=300))  # noqa: S310
        seconds = time.monotonic() - began
        tokens = answer.get("usage", {}).get("completion_tokens", 0)
        result = {"engine": engine_name, "model": model, "ready_seconds": round(ready_seconds, 1),
                  "completion_tokens": tokens, "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
                  "text": answer["choices"][0]["text"][:200]}  # fmt: skip
        Path(out, f"engine-{engine_name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"{engine_name}: ready in {ready_seconds:.0f} s, {tokens} tokens at {result['tokens_per_second']} tok/s")
        return [] if tokens > 0 else [f"{engine_name}: the completion returned no token"]
    finally:
        logs = subprocess.run(["docker", "logs", "--tail", "200", name], capture_output=True, text=True)
        Path(out, f"engine-{engine_name}.log").write_text(logs.stdout + logs.stderr)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def main(out: str) -> int:
    os.makedirs(out, exist_ok=True)
    driver = loaded_driver()
    failures = []
    for name, engine in engines.ENGINES.items():
        if driver is None:
            print(f"{name}: {engine.image} (CUDA {engine.cuda}): no NVIDIA driver is loaded to check it against")
            continue
        problem = engines.driver_problem(engine.image, engine.cuda, driver, "the loaded driver is")
        print(f"{name}: {engine.image} (CUDA {engine.cuda}) on driver {driver}: {problem or 'runs'}")
    if shutil.which("docker") is None:
        print("docker: not installed here, so no engine is served (this check pulls nothing)")
        return 0
    model = smallest_distill()
    present = [n for n, e in engines.ENGINES.items() if local_image(e.image)]
    print(f"engine images here: {present or 'none'}; a distill's weights here: {model or 'none'}")
    for name in present:
        if model is None:
            break
        if engines.driver_problem(engines.ENGINES[name].image, engines.ENGINES[name].cuda, driver, "the driver"):
            continue
        failures += serve(name, model, out)
    print("FAILED:\n  - " + "\n  - ".join(failures) if failures else "engine checks: nothing failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "artifacts/gpu-device"))
