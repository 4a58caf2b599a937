"""Controller cost per host: the base stage on 1, 10 and 50 hosts, the hosts being light lab machines.

    python tests/bench/controller_cost.py [--hosts 1,10,50] [--machines 10] [--strategy linear|mitogen] [--out F]

Light machines (systemd-nspawn, docs/bench.md) are real Debian hosts with their own sshd, so Ansible does to
each exactly what it does to a server; they cost the controller nothing but their own processes, which are not
counted. What is counted is the controller's side: the CPU seconds of ansible-playbook and everything it starts
(its forks, ssh), read from the kernel's accounting of the finished process tree, divided by the hosts. Each
size runs the stage's no-op re-run (the machines converged first, once), so what is measured is Ansible's own
work per host and task, not dpkg's. The ratio "per-host cost at 50 / at 1" says how the controller scales; a
site with 100+ hosts reads forks and strategy from it.

More hosts than machines: each machine answers under several inventory names (aliases), each with its own SSH
connection and control socket, so the controller does for an alias all it does for a host of its own. (About
22 light machines exhaust the default fs.inotify.max_user_instances of 128, and the bench leaves the host's
kernel settings alone.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ironserve import paths
from ironserve.bundle.build import build_for_roles
from ironserve.lab import lab
from ironserve.lab.spec import lab_from_dict
from ironserve.paths import ansible_env

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables
from run_scenarios import strategy_env

LAB = "bench-ctl"


def _inventory(folder: Path, state: dict, count: int) -> Path:
    """``count`` inventory hosts over the lab's machines: one name per machine, then aliases in turn."""
    machines = state["machines"]
    inventory = lab.stage_inventory(folder / f"inventory-{count}", machines[: min(count, len(machines))])
    if count <= len(machines):
        return inventory
    hosts = {}
    for index in range(count):
        machine = machines[index % len(machines)]
        name = f"{machine['name']}-as-{index // len(machines)}"
        hosts[name] = {
            "ansible_host": "127.0.0.1",
            "ansible_port": machine["ssh_port"],
            # its own control socket: aliases sharing one SSH master would cost the controller less than hosts
            "ansible_control_path_dir": str(folder / "control" / name),
        }
    data = yaml.safe_load((inventory / "hosts.yml").read_text())
    data["gpu_servers"]["hosts"] = hosts
    (inventory / "hosts.yml").write_text(yaml.safe_dump(data))
    return inventory


def _playbook(inventory: Path, env: dict[str, str], forks: int) -> dict:
    """Run the base stage; return its wall seconds (``_cpu`` adds the CPU seconds of its process tree)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [paths.tool("ansible-playbook"), "-i", str(inventory), "-f", str(forks), "playbooks/base.yml"],
        cwd=paths.REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = process.communicate()
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"the base stage failed on {inventory.name}:\n{output[-3000:]}")
    return {"wall_s": wall}


def measure(sizes: list[int], strategy: str, forks: int, machines: int) -> list[dict]:
    booted = min(max(sizes), machines)
    spec = lab_from_dict(
        {"machines": [{"name": f"ctl-{i:03d}", "kind": "light", "cpus": 1, "memory_mb": 256} for i in range(booted)]},
        name=LAB,
    )
    env = {**ansible_env(), **strategy_env(strategy), "ANSIBLE_HOST_KEY_CHECKING": "False"}
    rows = []
    try:
        state = lab.up(spec, build_for_roles(), log=lambda m: print(m, file=sys.stderr))
        folder = Path(state["folder"])
        # the first converge once per machine: aliases of one machine installing at once would race dpkg
        first = _cpu(lambda: _playbook(_inventory(folder, state, booted), env, forks))
        print(f"first converge on {booted} machines: {first['wall_s']:.1f} s wall", file=sys.stderr)
        for size in sizes:
            result = _cpu(lambda size=size: _playbook(_inventory(folder, state, size), env, forks))
            rows.append(
                {
                    "hosts": size,
                    "machines": min(size, booted),
                    "wall_s": round(result["wall_s"], 2),
                    "controller_cpu_s": round(result["cpu_s"], 2),
                    "cpu_per_host_s": round(result["cpu_s"] / size, 3),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        lab.down(LAB, log=lambda _m: None)
    return rows


def _cpu(run) -> dict:
    """CPU seconds of the children finished during ``run`` (ansible-playbook's whole tree)."""
    before = os.times()
    result = run()
    after = os.times()
    result["cpu_s"] = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return result


def report(rows: list[dict], strategy: str, forks: int, command: str) -> str:
    one = next(r for r in rows if r["hosts"] == min(r["hosts"] for r in rows))
    lines = [
        f"### Controller cost per host (base stage no-op re-run, light machines, strategy {strategy}, forks {forks})",
        "",
        f"Command: `{command}`",
        "",
        "| hosts | machines | wall s | controller CPU s | CPU s per host | per host / at 1 host |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row["cpu_per_host_s"] / one["cpu_per_host_s"] if one["cpu_per_host_s"] else float("nan")
        cells = [row["hosts"], row["machines"], row["wall_s"], row["controller_cpu_s"], row["cpu_per_host_s"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + f" | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,10,50", help="host counts, comma-separated (default: 1,10,50)")
    parser.add_argument(
        "--machines", type=int, default=10, help="light machines to boot; more hosts are aliases (default: 10)"
    )
    parser.add_argument("--strategy", choices=("linear", "mitogen"), default="linear")
    parser.add_argument("--forks", type=int, default=50, help="Ansible forks (default: 50)")
    parser.add_argument("--out", help="Markdown file to write the table to")
    args = parser.parse_args(argv)
    sizes = sorted({int(n) for n in args.hosts.split(",")})
    rows = measure(sizes, args.strategy, args.forks, args.machines)
    tables.publish(report(rows, args.strategy, args.forks, tables.command(argv)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
