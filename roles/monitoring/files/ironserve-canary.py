#!/usr/bin/python3
"""ironserve's canary (the monitoring role): one completion at temperature 0 to this host's engine, its answer's
sha256 compared with the one recorded when the deployment was made. The same weights, engine and settings give the
same answer at temperature 0; a different answer is drift. Results go to node_exporter's textfile folder:

    ironserve_canary_success             1 when the engine answered, 0 when it did not (EngineDown says more)
    ironserve_canary_answer_matches      1 when the answer is the recorded one, 0 on drift (absent if no answer)
    ironserve_canary_latency_seconds     how long the answer took
    ironserve_canary_last_run_timestamp_seconds

The golden answer is recorded per deployment: a deployment is the content of the files the configuration names
(the compose project and the engine's record), so a deliberate change (new weights, image or arguments) records a new
golden answer instead of raising drift. Standard library only; run by ironserve-canary.timer.

    ironserve-canary CONFIG [--record]    (--record: only record the golden answer if this deployment has none)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def deployment_key(files: list[str]) -> str:
    digest = hashlib.sha256()
    for name in files:
        path = Path(name)
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"") + b"\0")
    return digest.hexdigest()


def api_key(env_file: str) -> str:
    for line in Path(env_file).read_text().splitlines():
        if line.startswith("IRONSERVE_API_KEY="):
            return line.split("=", 1)[1].strip()
    raise SystemExit(f"{env_file} holds no IRONSERVE_API_KEY")


def ask(record: dict, key: str, prompt: str, max_tokens: int, timeout: float) -> tuple[str, float]:
    body = json.dumps(
        {"model": record["model"], "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "seed": 0}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 (this host's engine, from its record)
        record["url"].rstrip("/") + "/v1/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        method="POST",
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (this host's engine)
        answer = json.loads(response.read().decode())
    return answer["choices"][0]["text"], time.monotonic() - started


def write_textfile(path: str, values: dict[str, float]) -> None:
    lines = []
    for name, value in values.items():
        lines += [f"# TYPE {name} gauge", f"{name} {value}"]
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{Path(path).name}.{os.getpid()}"
    partial.write_text("\n".join(lines) + "\n")
    partial.chmod(0o644)
    partial.rename(path)  # the collector never reads half a file


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] != "--record"):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    config = json.loads(Path(argv[1]).read_text())
    record = json.loads(Path(config["record"]).read_text())
    if not record.get("serves_api", True):
        return 0  # a rank that serves no API has nothing to ask
    key = deployment_key(config["deployment_files"])
    golden_path = Path(config["golden"])
    golden = json.loads(golden_path.read_text()) if golden_path.exists() else {}
    if len(argv) == 3 and golden.get("deployment") == key:
        # A converge (the scale playbook's too) asks nothing of an engine that may be busy serving: the timer does.
        print("canary: this deployment's golden answer is already recorded")
        return 0
    now = time.time()
    try:
        text, seconds = ask(
            record, api_key(config["key_file"]), config["prompt"], config["max_tokens"], config["timeout"]
        )
    except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
        print(f"canary: {record['url']} did not answer: {exc}", file=sys.stderr)
        write_textfile(
            config["textfile"], {"ironserve_canary_success": 0, "ironserve_canary_last_run_timestamp_seconds": now}
        )
        return 1
    digest = hashlib.sha256(text.encode()).hexdigest()
    if golden.get("deployment") != key:
        golden_path.parent.mkdir(parents=True, exist_ok=True)
        golden_path.write_text(json.dumps({"deployment": key, "sha256": digest, "recorded": now}) + "\n")
        print(f"canary: recorded the golden answer of this deployment ({digest[:12]})")
        golden = {"deployment": key, "sha256": digest}
    elif len(argv) == 3:
        print("canary: this deployment's golden answer is already recorded")
    matches = int(digest == golden["sha256"])
    if not matches:
        print(f"canary: DRIFT: answer {digest[:12]}, recorded {golden['sha256'][:12]}", file=sys.stderr)
    write_textfile(
        config["textfile"],
        {
            "ironserve_canary_success": 1,
            "ironserve_canary_answer_matches": matches,
            "ironserve_canary_latency_seconds": round(seconds, 3),
            "ironserve_canary_last_run_timestamp_seconds": now,
        },
    )
    return 0 if matches else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))
