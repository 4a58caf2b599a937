"""A lab: its machines, their data segment and the bundle server they install packages from.

Everything a lab creates lives under ``labs/<name>/`` and in the interfaces named in its state file, so
``down`` can remove all of it: QEMU processes are stopped by pid, the bridge and taps deleted, the folder
removed. Caches (base image, bundle) stay: they are shared and keyed by their content.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from ironserve import paths
from ironserve.bundle.build import Bundle
from ironserve.lab import image as base_image
from ironserve.lab import light, processes, segment, vm
from ironserve.lab.spec import BUNDLE_GUEST_ADDRESS, LabSpec, lab_from_dict

DEFAULT_BOOT_TIMEOUT = 420.0
# A light machine boots in 2-3 s alone and in tens of seconds beside a converge.
LIGHT_BOOT_TIMEOUT = 120.0
LAB_GROUP_VARS = paths.REPO_ROOT / "inventories" / "lab" / "group_vars" / "all.yml"

# QEMU's guestfwd runs one command per connection; the forwarding itself is ironserve/lab/bundle_forwarder.py.
FORWARDER = '#!/bin/sh\nexec "{python}" -I -m ironserve.lab.bundle_forwarder {port}\n'


class LabError(RuntimeError):
    """The lab could not be brought up or down; the message says what and where."""


@dataclass(frozen=True)
class MachineState:
    name: str
    pid: int
    ssh_port: int
    folder: str
    mgmt_mac: str
    data_mac: str
    boot_seconds: float


def lab_folder(name: str) -> Path:
    return paths.labs_dir() / name


def state_file(name: str) -> Path:
    return lab_folder(name) / "state.json"


def same_spec(state: dict, spec: LabSpec) -> bool:
    """Whether a saved lab was booted from this declaration (compared as JSON: tuples come back as lists)."""
    return state.get("spec") == json.loads(json.dumps(spec.to_dict()))


def ensure_ssh_key() -> Path:
    key = paths.ssh_key_path()
    with paths.cache_lock("ssh-key"):
        if key.exists():
            return key
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ironserve-lab", "-f", str(key)],
            check=True,
        )
    return key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _port_listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _forward_alive(entry: dict) -> bool:
    """Whether a forward ``forward`` recorded still runs (its ssh, named by its log in the lab's folder)."""
    return processes.names(entry.get("pid"), entry["log"])


def load_state(name: str) -> dict | None:
    try:
        return json.loads(state_file(name).read_text())
    except (OSError, ValueError):
        return None


def _alive_check(kind: str):
    """How to tell that a machine of ``kind`` still runs: ``check(pid, folder)``."""
    return light.is_ours if kind == "light" else vm.is_our_qemu


def _alive(entry: dict) -> bool:
    return _alive_check(entry.get("kind", "qemu"))(entry["pid"], Path(entry["folder"]))


def running(state: dict) -> dict[str, bool]:
    return {m["name"]: _alive(m) for m in state["machines"]}


def _start_bundle_server(folder: Path, bundle: Bundle) -> tuple[int, int]:
    port = free_port()
    log = folder / "bundle-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ironserve.cli",
                "bundle",
                "serve",
                "--dir",
                str(bundle.folder),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--access-log",
                str(folder / "bundle-access.log"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=paths.REPO_ROOT,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LabError(f"the bundle server exited at start:\n{log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process.pid, port
        except OSError:
            time.sleep(0.2)
    raise LabError(f"the bundle server did not listen on 127.0.0.1:{port} within 15 s")


def write_inventory(
    folder: Path, spec: LabSpec, machines: list[MachineState], key: Path, bundle: Bundle | None
) -> Path:
    """An Ansible inventory for this lab, for a person's ad-hoc use (the repo's inventories/lab is static)."""
    group_vars: dict = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    }
    if bundle is not None:
        group_vars["package_source_bundle_url"] = f"http://{BUNDLE_GUEST_ADDRESS}/"
        group_vars["package_source_bundle_key_file"] = str(bundle.public_key)
    inventory = {
        "all": {
            "vars": group_vars,
            "hosts": {m.name: {"ansible_host": "127.0.0.1", "ansible_port": m.ssh_port} for m in machines},
        }
    }
    path = folder / "inventory.yml"
    path.write_text(f"# Written by 'ironserve lab up' for lab {spec.name}.\n" + yaml.safe_dump(inventory))
    return path


def stage_inventory(folder: Path, machines: list[dict], variables: dict | None = None) -> Path:
    """An inventory folder in which ``machines`` (state entries) form group gpu_servers with the lab's group
    variables: how the bench runs a stage on lab machines outside Molecule (layer builds, benchmarks)."""
    (folder / "group_vars").mkdir(parents=True, exist_ok=True)
    shutil.copy2(LAB_GROUP_VARS, folder / "group_vars" / "all.yml")
    hosts = {m["name"]: {"ansible_host": "127.0.0.1", "ansible_port": m["ssh_port"]} for m in machines}
    (folder / "hosts.yml").write_text(yaml.safe_dump({"gpu_servers": {"hosts": hosts, "vars": variables or {}}}))
    return folder


def _backings(spec: LabSpec, image: base_image.BaseImage, bundle: Bundle | None, log) -> dict[str, Path]:
    """Each machine's backing disk: its declared layer's (built first if the cache lacks it), else the image's."""
    from ironserve.lab import layers

    backings: dict[str, Path] = {}
    for machine in spec.machines:
        if machine.layer is None:
            backings[machine.name] = image.disk
            continue
        layer = layers.ensure(machine.layer, bundle, image.disk, image.folder.name, log=log)
        log(f"lab {spec.name}: {machine.name} boots from layer {machine.layer} ({layer.folder.name})")
        backings[machine.name] = layer.disk
    return backings


def _plan(
    machine,
    folder: Path,
    tap: str,
    spec: LabSpec,
    public_key: str,
    forwarder,
    backing: Path,
    state: dict,
    ssh_port: int | None = None,
):
    """How one machine starts: a QEMU machine, or a light one (its disk as raw, its NICs as veth pairs).
    ``ssh_port``: the port it had, when it starts again."""
    ssh_port = ssh_port or machine.ssh_port or free_port()
    if machine.kind == "light":
        return light.LightPlan(
            machine=machine,
            folder=folder,
            ssh_port=ssh_port,
            data_peer=tap,
            mgmt_peer=segment.mgmt_peer_name(tap),
            data_mtu=spec.data_mtu,
            public_key=public_key,
            backing_raw=light.raw_disk(backing),
            bundle_port=state["bundle_server_port"],
        )
    return vm.MachinePlan(
        machine=machine,
        folder=folder,
        ssh_port=ssh_port,
        tap=tap,
        data_mtu=spec.data_mtu,
        public_key=public_key,
        bundle_forwarder=forwarder,
        backing=backing,
    )


def up(
    spec: LabSpec,
    bundle: Bundle | None,
    timeout: float = DEFAULT_BOOT_TIMEOUT,
    log=print,
    backing: Path | None = None,
) -> dict:
    """Boot the lab (or return its state if it is already fully running). ``backing``: one disk every machine
    boots from instead of its declared layer or the base image (how a layer is built on its parent)."""
    existing = load_state(spec.name)
    if existing is not None:
        alive = running(existing)
        if alive and all(alive.values()) and same_spec(existing, spec):
            return existing
        log(f"lab {spec.name}: found a stale or different lab, taking it down first")
        down(spec.name, log=log)
    # The consoles a failed scenario prints must be this lab's, not an earlier one's of the same name.
    shutil.rmtree(paths.consoles_dir(spec.name), ignore_errors=True)
    for machine in spec.machines:
        if machine.ssh_port is not None and not _port_is_free(machine.ssh_port):
            raise LabError(
                f"machine {machine.name}: ssh_port {machine.ssh_port} on 127.0.0.1 is in use; "
                "stop what holds it or declare another port"
            )
    key = ensure_ssh_key()
    image = base_image.build(log=log)
    backings = {m.name: backing for m in spec.machines} if backing is not None else _backings(spec, image, bundle, log)
    folder = lab_folder(spec.name)
    folder.mkdir(parents=True, exist_ok=True)
    bridge, taps = segment.interface_names(spec.name, [m.name for m in spec.machines])
    state: dict = {
        "name": spec.name,
        "spec": spec.to_dict(),
        "folder": str(folder),
        "bridge": bridge,
        "taps": list(taps.values()),
        "image": str(image.folder),
        "accelerator": [],
        "bundle_server_pid": None,
        "bundle_server_port": None,
        "machines": [],
    }
    # Written before anything is started, so that a failure half-way can still be torn down.
    state_file(spec.name).write_text(json.dumps(state, indent=2))
    try:
        # QEMU machines' taps; a light machine's data veth takes its tap's name and joins the bridge at start.
        segment.create(bridge, [taps[m.name] for m in spec.machines if m.kind == "qemu"], spec.data_mtu)
        forwarder = None
        if bundle is not None:
            pid, port = _start_bundle_server(folder, bundle)
            state["bundle_server_pid"], state["bundle_server_port"] = pid, port
            forwarder = folder / "bundle-forwarder"
            forwarder.write_text(FORWARDER.format(python=sys.executable, port=port))
            forwarder.chmod(0o755)
        accel = vm.accelerator()
        state["accelerator"] = accel
        public_key = key.with_suffix(".pub").read_text()
        plans = [
            _plan(m, folder / m.name, taps[m.name], spec, public_key, forwarder, backings[m.name], state)
            for m in spec.machines
        ]
        for plan in plans:
            entry = {
                "name": plan.machine.name,
                "kind": plan.machine.kind,
                "pid": None,
                "ssh_port": plan.ssh_port,
                "folder": str(plan.folder),
                "mgmt_mac": plan.machine.mgmt_mac,
                "data_mac": plan.machine.data_mac,
                "boot_seconds": None,
            }
            state["machines"].append(entry)
            if isinstance(plan, light.LightPlan):
                entry.update(
                    data_peer=plan.data_peer, mgmt_peer=plan.mgmt_peer, backing=str(backings[plan.machine.name])
                )
                state_file(spec.name).write_text(json.dumps(state, indent=2))
                entry.update(light.start(plan, bridge))
            else:
                entry["pid"] = vm.start(plan, image, accel)
            state_file(spec.name).write_text(json.dumps(state, indent=2))
        kinds = sorted({p.machine.kind for p in plans})
        log(
            f"lab {spec.name}: {len(plans)} machine(s) started ({', '.join(kinds)}; {' '.join(accel[:2])}), "
            "waiting for SSH"
        )
        entries = {entry["name"]: entry for entry in state["machines"]}

        def wait(plan) -> float:
            entry = entries[plan.machine.name]
            try:
                return vm.wait_for_ssh(plan, key, entry["pid"], timeout, _alive_check(plan.machine.kind))
            except vm.KernelPanic:
                if isinstance(plan, light.LightPlan):
                    raise
                # An emulator fault, not what a scenario tests: one more boot, said in the output.
                vm.stop(entry["pid"], plan.folder)
                plan.console_log.rename(plan.folder / "console-panic.log")
                log(
                    f"lab {spec.name}: {plan.machine.name}'s kernel panicked while booting (its console: "
                    f"{plan.folder / 'console-panic.log'}); booting it once more"
                )
                entry["pid"] = vm.start(plan, image, accel)
                state_file(spec.name).write_text(json.dumps(state, indent=2))
                return vm.wait_for_ssh(plan, key, entry["pid"], timeout, _alive_check(plan.machine.kind))

        with ThreadPoolExecutor(max_workers=len(plans)) as pool:
            waits = {p.machine.name: pool.submit(wait, p) for p in plans}
            for entry in state["machines"]:
                entry["boot_seconds"] = round(waits[entry["name"]].result(), 1)
    except BaseException:
        state_file(spec.name).write_text(json.dumps(state, indent=2))
        raise
    machines = [MachineState(**{f: m[f] for f in MachineState.__dataclass_fields__}) for m in state["machines"]]
    state["inventory"] = str(write_inventory(folder, spec, machines, key, bundle))
    state["ssh_key"] = str(key)
    state_file(spec.name).write_text(json.dumps(state, indent=2))
    log(
        f"lab {spec.name}: up; "
        + ", ".join(f"{m.name} on 127.0.0.1:{m.ssh_port} in {m.boot_seconds} s" for m in machines)
    )
    return state


def _machine_entry(name: str, machine: str) -> tuple[dict, dict]:
    """The lab's state and its record of ``machine``; a LabError naming what is missing."""
    state = load_state(name)
    if state is None:
        raise LabError(f"no lab named {name}")
    entry = next((m for m in state["machines"] if m["name"] == machine), None)
    if entry is None:
        raise LabError(f"lab {name} has no machine {machine} ({', '.join(m['name'] for m in state['machines'])})")
    return state, entry


def _light_entry(name: str, machine: str) -> tuple[dict, dict]:
    state, entry = _machine_entry(name, machine)
    if entry.get("kind") != "light":
        raise LabError(f"lab {name}: {machine} is a QEMU machine; power cycles are for light machines")
    return state, entry


def power_off(name: str, machine: str, orderly: bool = False) -> float:
    """Cut a light machine's power (``orderly``: shut it down first, as a reboot does). Its disk stays, and
    ``power_on`` boots it again with the same identity, addresses and SSH port. Returns when the machine was told
    (time.time(): the kill, or the shutdown's start), for a caller measuring what followed."""
    state, entry = _light_entry(name, machine)
    if orderly:
        told = time.time()
        light.stop(entry)
    else:
        told = light.power_off(entry)
    entry.update(pid=None, leader_pid=None, forward_pid=None)
    state_file(name).write_text(json.dumps(state, indent=2))
    return told


def power_on(name: str, machine: str, timeout: float = DEFAULT_BOOT_TIMEOUT) -> float:
    """Boot a light machine that ``power_off`` stopped; return the seconds until root could log in over SSH."""
    state, entry = _light_entry(name, machine)
    if _alive(entry):
        raise LabError(f"lab {name}: {machine} is running; power it off first")
    if "backing" not in entry:
        raise LabError(f"lab {name} was made by an older ironserve that cannot power machines on: take it down and up")
    spec = lab_from_dict(state["spec"])
    key = Path(state["ssh_key"])
    plan = _plan(
        next(m for m in spec.machines if m.name == machine),
        Path(entry["folder"]),
        entry["data_peer"],
        spec,
        key.with_suffix(".pub").read_text(),
        None,
        Path(entry["backing"]),
        state,
        ssh_port=entry["ssh_port"],
    )
    entry.update(light.start(plan, state["bridge"]))
    state_file(name).write_text(json.dumps(state, indent=2))
    try:
        return vm.wait_for_ssh(plan, key, entry["pid"], min(timeout, LIGHT_BOOT_TIMEOUT), light.is_ours)
    except vm.VmError as error:
        # Seen once in a full run beside a QEMU converge (2026-12-07): a restarted light machine's systemd stopped at
        # its journal flush for the whole 420 s; its cause is not found yet. Its machine's boot, not what a scenario
        # tests: recorded where a reader of the run sees it, then powered off and on once more.
        note = f"lab {name}: {machine} did not boot ({str(error).splitlines()[0]}); "
        note += f"its systemd's jobs: {light.unfinished_boot(entry)}"
        print(note + "; powered off and on once more", file=sys.stderr)
        with plan.console_log.open("a") as console:
            console.write(f"\n[ironserve] {note}\n")
        light.stop(entry, grace=10.0)  # whether it hangs or died: its processes, mounts and NICs go
    entry.update(light.start(plan, state["bridge"]))
    state_file(name).write_text(json.dumps(state, indent=2))
    return vm.wait_for_ssh(plan, key, entry["pid"], timeout, light.is_ours)


def wipe_disk(name: str, machine: str) -> None:
    """Give a powered-off light machine a blank disk again: everything written since the base image (or its layer)
    is gone, as after a disk replacement, and ``power_on`` boots it with the same identity, NICs and SSH port (new
    host keys) from the image. For a disaster-recovery drill."""
    _state, entry = _light_entry(name, machine)
    if _alive(entry):
        raise LabError(f"lab {name}: {machine} is running; power it off first")
    light.wipe(entry)


def forward(name: str, machine: str, local_port: int, target: str, timeout: float = 15.0) -> int:
    """Forward 127.0.0.1:``local_port`` on this machine through ``machine``'s SSH to ``target`` (host:port on the
    machine's segments), for a person or a client here to reach a service on a segment this machine has no
    address on. Runs until the lab goes down (``down`` stops it; ``leftovers`` sees it by its log in the lab's
    folder). Returns the forwarder's pid once the port listens; a forward of this lab already running from that port
    to that target is kept and its pid returned."""
    state, entry = _machine_entry(name, machine)
    running = [f for f in state.get("forwards", []) if f["local_port"] == local_port and _forward_alive(f)]
    if running and running[0]["target"] == target:
        return running[0]["pid"]
    if not _port_is_free(local_port):
        raise LabError(f"127.0.0.1:{local_port} is taken on this machine: choose another local port")
    log = lab_folder(name) / f"forward-{local_port}.log"
    argv = vm.ssh_argv(entry["ssh_port"], Path(state["ssh_key"]))
    argv[-1:-1] = ["-N", "-L", f"127.0.0.1:{local_port}:{target}", "-o", "ExitOnForwardFailure=yes"]
    # A TCG guest under load can stall for seconds: a minute of silence before the forward gives up.
    argv[-1:-1] = ["-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=6", "-E", str(log)]
    # Its own output to its log (-E), none to the caller's: a pipe reading the caller would wait for it to end.
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while not _port_listens(local_port):
        if process.poll() is not None or time.monotonic() > deadline:
            processes.stop(process.pid, lambda pid: processes.names(pid, str(log)), 2.0)
            said = log.read_text()[-1000:] if log.exists() else ""
            raise LabError(f"lab {name}: the forward to {target} through {machine} did not start: {said}")
        time.sleep(0.2)
    state["forwards"] = [f for f in state.get("forwards", []) if f["local_port"] != local_port]
    state["forwards"].append(
        {"pid": process.pid, "machine": machine, "local_port": local_port, "target": target, "log": str(log)}
    )
    state_file(name).write_text(json.dumps(state, indent=2))
    return process.pid


def _remove_folder(folder: Path) -> None:
    """Remove a lab's folder, unmounting first whatever a light machine left mounted in it: deleting through a
    mounted overlay would write whiteouts instead of removing anything."""
    for mount in reversed(light.lab_mounts(folder)):
        subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False)
    if light.lab_mounts(folder):
        raise LabError(f"{folder} still has mounts ({', '.join(light.lab_mounts(folder))}); not removing it")
    shutil.rmtree(folder, ignore_errors=True)


def _keep_consoles(name: str, state: dict) -> None:
    """Keep each QEMU machine's serial console past the lab: a machine that stopped answering is explained there
    (a boot that hung, a kernel panic), and the bench prints it when a scenario fails."""
    kept = paths.consoles_dir(name)
    shutil.rmtree(kept, ignore_errors=True)
    for machine in state["machines"]:
        console = Path(machine["folder"]) / "console.log"
        if machine.get("kind") != "light" and console.is_file():
            kept.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(console, kept / f"{machine['name']}.log")


def down(name: str, log=print) -> bool:
    """Stop and remove everything of lab ``name``; return False when there was no such lab."""
    state = load_state(name)
    folder = lab_folder(name)
    if state is None:
        if folder.exists():
            _remove_folder(folder)
        return False
    for machine in state["machines"]:
        if machine.get("kind") == "light":
            light.stop(machine)
        else:
            vm.stop(machine["pid"], Path(machine["folder"]))
    for entry in state.get("forwards", []):
        processes.stop(entry["pid"], lambda _pid, entry=entry: _forward_alive(entry), 5.0)
    processes.stop(state.get("bundle_server_pid"), lambda pid: processes.names(pid, "bundle"), 5.0)
    segment.remove(state["bridge"], state["taps"])
    _keep_consoles(name, state)
    _remove_folder(folder)
    log(f"lab {name}: down")
    return True


def status(name: str) -> dict | None:
    state = load_state(name)
    if state is None:
        return None
    alive = running(state)
    return {
        "name": name,
        "machines": [
            {
                "name": m["name"],
                "running": alive[m["name"]],
                "ssh_port": m["ssh_port"],
                "pid": m["pid"],
                "boot_seconds": m["boot_seconds"],
            }
            for m in state["machines"]
        ],
        "bridge": state["bridge"],
        "inventory": state.get("inventory"),
    }


def all_labs() -> list[str]:
    folder = paths.labs_dir()
    return sorted(p.parent.name for p in folder.glob("*/state.json")) if folder.exists() else []


def leftovers(name: str | None = None) -> list[str]:
    """Whatever labs (or lab ``name``) left on this machine: QEMU or bundle-server processes started for a
    lab's folder, lab interfaces, lab folders. Empty after the lab is down; the test command checks it
    after each scenario."""
    found: list[str] = []
    scope = paths.labs_dir() / name if name else paths.labs_dir()
    marker = (str(scope) + "/").encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker in arg for arg in argv):
            found.append(f"process {proc.name}: {b' '.join(argv).decode(errors='replace')[:160]}")
    tag = segment.interface_names(name, [])[0][: -len("br")] if name else None
    for interface in sorted(Path("/sys/class/net").iterdir()):
        if segment.is_lab_interface(interface.name) and (tag is None or interface.name.startswith(tag)):
            found.append(f"network interface {interface.name}")
    found += [f"mount {mount}" for mount in light.lab_mounts(scope)]
    if name:
        if scope.exists():
            found.append(f"lab folder {scope}")
    elif scope.exists():
        found += [f"lab folder {folder}" for folder in sorted(scope.iterdir())]
    return found
