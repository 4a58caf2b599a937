"""site.yml against its physical floor, and its no-op re-run against its first converge, side by side in one run.

    python tests/bench/site_floor.py [--out artifacts/bench/site-floor.md]

Boots two identical fresh QEMU machines shaped like the demo lab's (inventories/lab/lab.yml, the same disks and
MACs) from the base image, no layer. On the first, ``ansible-playbook site.yml`` (plain SSH with pipelining, as a
site runs it) converges every stage, then runs again (the no-op re-run). On the second, tests/bench/site_floor.sh
makes the same package transactions (the first machine's apt history, replayed in order), writes the same files
(taken from the first machine; the networkd files with the second's MACs and address), creates the same arrays,
volume group and filesystems and starts the same services, as a plain script with no checks: what apt, dpkg,
mdadm and mkfs cost by themselves. One after the other, so neither shares the cores with the other.

What the floor leaves out: preflight's probe and report (they are checks), the network_check stage (one host has
no pair to measure), the guarded apply's rollback timer. What it keeps of site.yml's order: the package source
first, the nouveau blacklist before the driver's packages, every transaction as the converge made it.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

from ironserve import paths
from ironserve.bundle.build import build_for_roles
from ironserve.lab import lab, vm
from ironserve.lab.spec import lab_from_dict
from ironserve.paths import ansible_env

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables

LAB = "bench-site"
DEMO = paths.REPO_ROOT / "inventories" / "lab"
SCRIPT = Path(__file__).with_name("site_floor.sh")
# What the roles write besides packages: ironserve's own names, and the few files of others they own.
ROLE_FILES = [
    "/etc/ironserve",
    "/etc/apt/sources.list.d/ironserve.sources",
    "/etc/apt/keyrings/ironserve-bundle.asc",
    "/usr/local/sbin/ironserve-*",
    "/etc/systemd/system/ironserve-*",
    "/etc/systemd/network/*",
    "/etc/modprobe.d/ironserve-*",
    "/etc/modules-load.d/ironserve-*",
    "/etc/dkms/framework.conf.d/ironserve-*",
    "/var/lib/ironserve",
    "/etc/docker/daemon.json",
    "/etc/chrony/chrony.conf",
]
RECAP = re.compile(r"^(?P<host>\S+)\s+: ok=\d+\s+changed=(?P<changed>\d+)", re.MULTILINE)


def _group_vars() -> dict:
    return yaml.safe_load(lab.LAB_GROUP_VARS.read_text())


def _host_vars(name: str) -> dict:
    return yaml.safe_load((DEMO / "host_vars" / f"{name}.yml").read_text())


def _data_address(host_vars: dict) -> str:
    """The host's data-plane address with its prefix, as data_network renders it (10.99.0.12/24)."""
    network, prefix = _group_vars()["data_network_subnet"].split("/")
    return f"{network.rsplit('.', 1)[0]}.{host_vars['data_network_host_index']}/{prefix}"


def spec():
    """The demo lab's two machines under another name, with their declared MACs and free SSH ports."""
    data = yaml.safe_load((DEMO / "lab.yml").read_text())
    for machine in data["machines"]:
        host_vars = _host_vars(machine["name"])
        machine.pop("ssh_port", None)
        machine["mgmt_mac"] = host_vars["mgmt_network_mac"]
        machine["data_mac"] = host_vars["data_network_macs"][0]
    return lab_from_dict(data, name=LAB)


def _ssh(entry: dict, command: str, data: bytes | None = None, timeout: float = 3600) -> bytes:
    result = subprocess.run(
        vm.ssh_argv(entry["ssh_port"], paths.ssh_key_path(), command),
        input=data,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{entry['name']}: {command!r} failed: {result.stderr.decode(errors='replace')[-3000:]}")
    return result.stdout


def _inventory(folder: Path, entry: dict) -> Path:
    inventory = lab.stage_inventory(folder / "inventory", [entry])
    (inventory / "host_vars").mkdir(exist_ok=True)
    source = DEMO / "host_vars" / f"{entry['name']}.yml"
    (inventory / "host_vars" / source.name).write_text(source.read_text())
    return inventory


def _site(inventory: Path, log: Path) -> tuple[float, dict[str, int]]:
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            [paths.tool("ansible-playbook"), "-i", str(inventory), "site.yml"],
            cwd=paths.REPO_ROOT,
            env=ansible_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.monotonic() - started
    text = log.read_text()
    if result.returncode != 0:
        raise SystemExit(f"site.yml failed (log {log}):\n{text[-4000:]}")
    changed: dict[str, int] = {}
    for match in RECAP.finditer(text):
        changed[match["host"]] = changed.get(match["host"], 0) + int(match["changed"])
    return seconds, changed


def twin_tar(raw: bytes, swaps: dict[str, str]) -> bytes:
    """``raw`` (a tar of the first machine's files) with each ``swaps`` key replaced in the networkd files."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(raw)) as source, tarfile.open(fileobj=out, mode="w") as target:
        for member in source.getmembers():
            content = source.extractfile(member).read() if member.isfile() else None
            if content is not None and member.name.startswith("etc/systemd/network/"):
                text = content.decode()
                for old, new in swaps.items():
                    text = text.replace(old, new)
                content = text.encode()
                member.size = len(content)
            target.addfile(member, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


def _twin_files(first: dict, first_vars: dict, second_vars: dict) -> bytes:
    """The files the converge wrote on ``first``, for its twin: networkd's with the twin's MACs and address."""
    raw = _ssh(first, f"cd / && ls -d {' '.join(ROLE_FILES)} 2>/dev/null | sed 's|^/||' | tar -c -f - -T -")
    return twin_tar(
        raw,
        {
            first_vars["mgmt_network_mac"]: second_vars["mgmt_network_mac"],
            first_vars["data_network_macs"][0]: second_vars["data_network_macs"][0],
            # the address up to its prefix: 10.99.0.11/ cannot match 10.99.0.110/
            _data_address(first_vars).split("/")[0] + "/": _data_address(second_vars).split("/")[0] + "/",
        },
    )


def _floor_inputs(first: dict, second: dict, history_start: int) -> dict[str, bytes]:
    first_vars, second_vars = _host_vars(first["name"]), _host_vars(second["name"])
    history = _ssh(first, f"tail -n +{history_start + 1} /var/log/apt/history.log").decode()
    transactions = [
        line.removeprefix("Commandline: ")
        for line in history.splitlines()
        if line.startswith("Commandline: ") and re.search(r"\b(install|remove|purge)\b", line)
    ]
    # the lab's own seed unit is the image's, not the converge's
    units = _ssh(
        first,
        "systemctl list-unit-files 'ironserve-*' --state=enabled --no-legend | cut -d' ' -f1"
        " | grep -v '^ironserve-lab-'",
    ).decode()
    group_vars = _group_vars()
    cold = yaml.safe_load((paths.REPO_ROOT / "roles/cold_tier/vars/Debian.yml").read_text())["cold_tier_binaries"]
    defaults = yaml.safe_load((paths.REPO_ROOT / "roles/cold_tier/defaults/main.yml").read_text())
    mgmt_address = group_vars["mgmt_network_address"].split("/")[0]
    env = {
        "HOT_DEVICES": " ".join(second_vars["hot_tier_devices"]),
        "WARM_DEVICES": " ".join(second_vars["warm_tier_devices"]),
        "DATA_ADDRESS": _data_address(second_vars),
        "BUNDLE_URL": group_vars["package_source_bundle_url"],
        "S3_ADDRESS": mgmt_address,
        "BUCKETS": " ".join(defaults["cold_tier_buckets"]),
    }
    return {
        "files.tar": _twin_files(first, first_vars, second_vars),
        "transactions": "\n".join(transactions).encode() + b"\n",
        "holds": _ssh(first, "apt-mark showhold"),
        "units": units.encode(),
        "binaries": "".join(f"{name} {pin['version']} {pin['sha256']}\n" for name, pin in cold.items()).encode(),
        "env": "".join(f"{key}={value!r}\n" for key, value in env.items()).encode(),
        "site_floor.sh": SCRIPT.read_bytes(),
    }


def measure(folder: Path) -> dict:
    state = lab.up(spec(), build_for_roles(), log=lambda m: print(m, file=sys.stderr))
    first, second = state["machines"][:2]
    for entry in (first, second):
        _ssh(entry, "true")
    history_start = int(_ssh(first, "wc -l < /var/log/apt/history.log 2>/dev/null || echo 0").decode().strip() or 0)
    inventory = _inventory(folder, first)
    print("bench: site.yml, first converge", file=sys.stderr)
    converge_s, converge_changed = _site(inventory, folder / "site-first.log")
    print(f"bench: first converge {converge_s:.0f} s; no-op re-run", file=sys.stderr)
    noop_s, noop_changed = _site(inventory, folder / "site-noop.log")
    inputs = _floor_inputs(first, second, history_start)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        for name, content in inputs.items():
            info = tarfile.TarInfo(f"floor/{name}")
            info.size = len(content)
            bundle.addfile(info, io.BytesIO(content))
    _ssh(second, "rm -rf /root/floor && tar -x -f - -C /root", data=buffer.getvalue())
    print(f"bench: no-op re-run {noop_s:.0f} s; the plain script on the twin", file=sys.stderr)
    started = time.monotonic()
    floor_log = _ssh(second, "bash /root/floor/site_floor.sh")
    floor_s = time.monotonic() - started
    (folder / "floor.log").write_bytes(floor_log)
    return {
        "converge_s": converge_s,
        "noop_s": noop_s,
        "floor_s": floor_s,
        "converge_changed": converge_changed,
        "noop_changed": noop_changed,
        "transactions": inputs["transactions"].decode().count("\n"),
    }


def report(result: dict, command: str) -> str:
    return "\n".join(
        [
            "### site.yml against its floor, and its no-op re-run (one QEMU machine each, one after the other)",
            "",
            f"Command: `{command}`",
            "",
            "| run | seconds | ratio |",
            "|---|---|---|",
            f"| plain script on the twin (the same {result['transactions']} package transactions, files, disks, "
            f"services) | {result['floor_s']:.0f} | |",
            f"| site.yml, first converge (changed={sum(result['converge_changed'].values())}) | "
            f"{result['converge_s']:.0f} | converge / script: {result['converge_s'] / result['floor_s']:.2f} |",
            f"| site.yml, no-op re-run (changed={sum(result['noop_changed'].values())}) | {result['noop_s']:.0f} | "
            f"no-op / first converge: {result['noop_s'] / result['converge_s']:.2f} |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="Markdown file to write the table to")
    args = parser.parse_args(argv)
    folder = paths.REPO_ROOT / "artifacts" / "bench" / "site-floor"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result = measure(folder)
    finally:
        lab.down(LAB, log=lambda _m: None)
    tables.publish(report(result, tables.command(argv)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
