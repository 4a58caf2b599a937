"""Run the Molecule scenarios of the bench, side by side where the machine has room, each with its own log.

    python tests/bench/run_scenarios.py [--jobs N] [--strategy mitogen|linear] SCENARIO...

Scenarios start in the order given (longest first is best), at most ``--jobs`` at a time, and a scenario starts
beside the running ones only while all their QEMU machines number no more than this machine's cores and their
memory stays within what it has free (light machines are native processes: they take memory, not a core). A
machine, not a vCPU, is what keeps a core busy under TCG: a guest mostly does one thing at a time (dpkg, Python),
so one machine of two vCPUs beside another leaves neither short of a core.
Each writes ``artifacts/bench/<scenario>.log``; a failed one has its log's end printed, and after the table a few
lines saying why (CI keeps only the end of what a run printed). After each,
``ironserve lab leftovers`` must find nothing of its lab. The run ends with a table of per-scenario times and
exits 1 if any scenario failed or left something behind.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ironserve import paths
from ironserve.lab.vm import KERNEL_PANIC

REPO = Path(__file__).resolve().parents[2]
MOLECULE = REPO / "molecule"
LOGS = REPO / "artifacts" / "bench"
# Measured on 2 cores. With Mitogen's CPU pinning (everything on one core; docs/bench.md), two 2-vCPU scenarios side
# by side only slowed each other down. Without it, a whole suite with two vCPUs per core and three scenarios at a
# time (2026-12-07; two-machine scenarios beside others) was no shorter than one by one. Counting machines, not vCPUs
# (2026-12-08, layers cached): gpu-stack and inference side by side, then storage, took 1532 s against 2282 one after
# the other (gpu-stack 1241 against 993, inference 733 against about 517, storage 797 against 772), and the cores
# that were a third idle with one machine running were busy; the two-machine scenarios (network, inference-nodes,
# probe) still run with nothing but light machines beside them. --machines-per-core changes the rule for one run.
MACHINES_PER_CORE = 1
# What the controller itself needs beside the guests: Ansible, Molecule, testinfra, the bundle servers.
CONTROLLER_RESERVE_MB = 3072
PROGRESS_SECONDS = 60
FAILED_LOG_TAIL_LINES = 150
FAILED_CONSOLE_TAIL_LINES = 40
# CI keeps only the last lines of what a run printed: each failed scenario gets a few lines naming why, after the table.
DIGEST_LINES = 6
DIGEST_WIDTH = 200
# pytest's summary lines, Ansible's failed tasks, Molecule's own errors, then pytest's first assertion lines.
# (Not Ansible's retries, "FAILED - RETRYING", nor Molecule's "glob failed" about a default scenario we do not have.)
DIGEST_FIRST = re.compile(
    r"^(FAILED|ERROR) (?![- ])|^\[ERROR\]: |^Origin: |fatal: \[|failed: \[|CRITICAL (?!.*glob failed)"
)
DIGEST_THEN = re.compile(r"^E {3}")


@dataclass(frozen=True)
class Needs:
    cpus: int
    memory_mb: int
    qemu_machines: int = 0


@dataclass
class Running:
    name: str
    needs: Needs
    process: subprocess.Popen
    started: float
    log: Path


@dataclass
class Outcome:
    name: str
    seconds: float
    passed: bool
    leftovers: list[str] = field(default_factory=list)
    # Machines whose guest kernel panicked in a failed run (their consoles say so).
    panicked: list[str] = field(default_factory=list)
    # Run once more because of that panic: this run is reported, and the next one decides.
    ran_again: bool = False


def panicked_machines(consoles: Path) -> list[str]:
    """The machines of a lab whose console shows their kernel panicked (while running: a panic while booting is
    retried by ``ironserve lab up`` itself)."""
    return [log.stem for log in sorted(consoles.glob("*.log")) if KERNEL_PANIC in log.read_text(errors="replace")]


def last_runs(outcomes: list[Outcome]) -> list[Outcome]:
    """The runs that decide: not those run once more."""
    return [o for o in outcomes if not o.ran_again]


def run_again_after_panic(outcome: Outcome, already_ran_again: set[str]) -> bool:
    """A scenario that failed because a guest kernel panicked runs once more; a second panic, or a failure with no
    panic, is a failure. Under TCG a guest kernel panicked in the middle of a storage converge while loading md_mod
    (a jump into the middle of a patched instruction, 2026-12-07; the same scenario then passed): the emulator's, not
    the product's. A product change that panics a kernel panics it again, and fails."""
    return not outcome.passed and bool(outcome.panicked) and outcome.name not in already_ran_again


def scenario_needs(name: str, molecule_dir: Path = MOLECULE) -> Needs:
    """The QEMU machines, their vCPUs and the memory of a scenario's machines, as its molecule.yml declares them
    (the bench's defaults otherwise: 2 vCPUs, 1024 MiB)."""
    platforms = yaml.safe_load((molecule_dir / name / "molecule.yml").read_text()).get("platforms") or []
    qemu = [p for p in platforms if p.get("kind", "qemu") == "qemu"]
    return Needs(
        cpus=sum(int(p.get("cpus", 2)) for p in qemu),
        memory_mb=sum(int(p.get("memory_mb", 1024)) for p in platforms),
        qemu_machines=len(qemu),
    )


def fits(
    candidate: Needs,
    running: list[Needs],
    cores: int,
    free_mb: int,
    jobs: int,
    machines_per_core: int = MACHINES_PER_CORE,
) -> bool:
    """Whether ``candidate`` may start beside ``running``. Alone, a scenario always starts (it must run somehow)."""
    if not running:
        return True
    if len(running) >= jobs:
        return False
    machines = candidate.qemu_machines + sum(n.qemu_machines for n in running)
    memory = candidate.memory_mb + sum(n.memory_mb for n in running)
    return machines <= machines_per_core * cores and memory <= free_mb - CONTROLLER_RESERVE_MB


def next_to_start(
    waiting: list[str],
    needs: dict[str, Needs],
    running: list[Needs],
    cores: int,
    free_mb: int,
    jobs: int,
    machines_per_core: int = MACHINES_PER_CORE,
):
    """The first waiting scenario, in the given order, that fits now; None if none does."""
    return next((name for name in waiting if fits(needs[name], running, cores, free_mb, jobs, machines_per_core)), None)


def free_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def strategy_env(strategy: str) -> dict[str, str]:
    """Ansible settings for the bench's connection strategy (docs/bench.md has the measurement behind mitogen)."""
    if strategy == "linear":
        return {}
    # Mitogen's mitogen_linear without its CPU pinning, which on a 2-core machine puts everything a play starts,
    # the lab machines included, on one CPU (tests/bench/strategy/mitogen_linear.py).
    plugins = Path(__file__).resolve().parent / "strategy"
    # Mitogen opens its own SSH connections and reads host key checking from Ansible's setting, not from
    # ansible_ssh_common_args; lab machines make new host keys at every boot.
    return {
        "ANSIBLE_STRATEGY_PLUGINS": str(plugins),
        "ANSIBLE_STRATEGY": "mitogen_linear",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        # Ansible's connect timeout (10 s by default) covers mitogen's whole bootstrap: SSH, then its loader in the
        # guest's Python, which under TCG with two scenarios on two cores took longer than that (measured).
        "ANSIBLE_TIMEOUT": "90",
    }


def _start(name: str, needs: Needs, env: dict[str, str]) -> Running:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "molecule"), "test", "-s", name],
            cwd=REPO,
            # A scenario's own tests may read what its run printed (the frontend scenario scans it for secrets).
            env={**env, "IRONSERVE_BENCH_LOG": str(log)},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    print(f"bench: {name} started ({needs.cpus} vCPUs, {needs.memory_mb} MiB), log {log.relative_to(REPO)}", flush=True)
    return Running(name, needs, process, time.monotonic(), log)


def _leftovers(name: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "ironserve.cli", "lab", "leftovers", f"mol-{name}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in result.stdout.splitlines() if line.startswith("left behind:")]


def _finish(job: Running) -> Outcome:
    seconds = time.monotonic() - job.started
    outcome = Outcome(job.name, seconds, job.process.returncode == 0, _leftovers(job.name))
    if not outcome.passed:
        outcome.panicked = panicked_machines(paths.consoles_dir(f"mol-{job.name}"))
    verdict = "passed" if outcome.passed else f"FAILED (exit {job.process.returncode})"
    print(f"bench: {job.name} {verdict} in {seconds:.0f} s", flush=True)
    if not outcome.passed:
        tail = job.log.read_text(errors="replace").splitlines()[-FAILED_LOG_TAIL_LINES:]
        print(f"--- last {len(tail)} lines of {job.log.relative_to(REPO)} ---", *tail, "--- end ---", sep="\n")
        for console in sorted(paths.consoles_dir(f"mol-{job.name}").glob("*.log")):
            lines = console.read_text(errors="replace").splitlines()[-FAILED_CONSOLE_TAIL_LINES:]
            print(f"--- last {len(lines)} lines of {console.stem}'s console ---", *lines, "--- end ---", sep="\n")
    for item in outcome.leftovers:
        print(f"bench: {job.name} {item}", flush=True)
    for machine in outcome.panicked:
        # The next run's machines write their consoles there again: keep this one beside the scenario's log.
        kept = LOGS / f"{job.name}-{machine}-panic.log"
        kept.write_text((paths.consoles_dir(f"mol-{job.name}") / f"{machine}.log").read_text(errors="replace"))
        print(f"bench: {job.name}: the kernel of {machine} panicked (its console: {kept.relative_to(REPO)})")
    return outcome


def failure_digest(log: str) -> list[str]:
    """The few lines of a failed scenario's log that say why, shortened to fit what CI keeps of a run."""
    lines = log.splitlines()
    first = [line for line in lines if DIGEST_FIRST.search(line)]
    then = [line for line in lines if DIGEST_THEN.match(line)]
    picked = list(dict.fromkeys(first + then))[:DIGEST_LINES] or lines[-DIGEST_LINES:]
    return [line.strip()[:DIGEST_WIDTH] for line in picked]


def table(outcomes: list[Outcome], wall: float) -> str:
    rows = ["| scenario | result | seconds |", "|---|---|---|"]
    for o in outcomes:
        result = "passed" if o.passed else "FAILED"
        if o.ran_again:
            result = f"guest kernel panic on {', '.join(o.panicked)}, ran again"
        if o.leftovers:
            result += f", {len(o.leftovers)} left behind"
        rows.append(f"| {o.name} | {result} | {o.seconds:.0f} |")
    total = sum(o.seconds for o in outcomes)
    final = last_runs(outcomes)
    rows.append(
        f"| all, side by side | {sum(o.passed and not o.leftovers for o in final)} of {len(final)} | "
        f"{wall:.0f} (scenarios together {total:.0f}) |"
    )
    return "\n".join(rows)


def run(scenarios: list[str], jobs: int, strategy: str, machines_per_core: int = MACHINES_PER_CORE) -> int:
    needs = {name: scenario_needs(name) for name in scenarios}
    cores = os.cpu_count() or 1
    env = {
        **os.environ,
        **strategy_env(strategy),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "NO_COLOR": "1",
        "COLUMNS": "160",
    }
    print(
        f"bench: {len(scenarios)} scenarios, up to {jobs} at a time on {cores} cores "
        f"({machines_per_core} QEMU machines per core at most), strategy {strategy}",
        flush=True,
    )
    waiting, running, outcomes = list(scenarios), [], []
    started = last_progress = time.monotonic()
    while waiting or running:
        for job in [j for j in running if j.process.poll() is not None]:
            running.remove(job)
            outcome = _finish(job)
            outcomes.append(outcome)
            if run_again_after_panic(outcome, {o.name for o in outcomes if o.ran_again}):
                outcome.ran_again = True
                waiting.insert(0, outcome.name)
                print(f"bench: {outcome.name} runs once more: a guest kernel panicked, not a check", flush=True)
        while waiting:
            name = next_to_start(
                waiting, needs, [j.needs for j in running], cores, free_memory_mb(), jobs, machines_per_core
            )
            if name is None:
                break
            waiting.remove(name)
            running.append(_start(name, needs[name], env))
        if running and time.monotonic() - last_progress >= PROGRESS_SECONDS:
            last_progress = time.monotonic()
            now = ", ".join(f"{j.name} {last_progress - j.started:.0f} s" for j in running)
            print(f"bench: {last_progress - started:.0f} s; running {now}; waiting {len(waiting)}", flush=True)
        time.sleep(2)
    print(table(outcomes, time.monotonic() - started), flush=True)
    # A run that was run once more is in the table with its reason; only the last runs decide.
    final = last_runs(outcomes)
    for outcome in final:
        if not outcome.passed:
            why = failure_digest((LOGS / f"{outcome.name}.log").read_text(errors="replace"))
            print(f"bench: why {outcome.name} failed:", *why, sep="\n  ", flush=True)
    return 0 if all(o.passed and not o.leftovers for o in final) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+", help="Molecule scenario names, longest first")
    parser.add_argument("--jobs", type=int, default=2, help="scenarios at a time at most (default: 2)")
    parser.add_argument(
        "--strategy",
        choices=("mitogen", "linear"),
        default="mitogen",
        help="Ansible strategy for every converge (default: mitogen, see docs/bench.md)",
    )
    parser.add_argument(
        "--machines-per-core",
        type=int,
        default=MACHINES_PER_CORE,
        help=f"QEMU machines of the running scenarios per core of this machine, at most (default: {MACHINES_PER_CORE})",
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if not (MOLECULE / s / "molecule.yml").exists()]
    if unknown:
        parser.error(f"no such scenario under molecule/: {', '.join(unknown)}")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.machines_per_core < 1:
        parser.error("--machines-per-core must be at least 1")
    return run(args.scenarios, args.jobs, args.strategy, args.machines_per_core)


if __name__ == "__main__":
    sys.exit(main())
