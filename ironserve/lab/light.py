"""A light lab machine: the base image (or a layer) booted under systemd-nspawn instead of QEMU.

For scenarios that need a real Debian 13 with systemd and its own network stack but not a kernel, disks or
RDMA of their own (a front door, VRRP, Prometheus, backups): its userspace runs at native speed and it boots in
about a second, where a TCG machine takes 25-50 s to SSH and runs Python about 8x slower.

What it shares with a QEMU machine, so roles and tests cannot tell them apart where it matters:
- the same root filesystem: the image's (or layer's) disk as a raw file, loop-mounted read-only under an
  overlay whose upper layer is the machine's own (copy-on-write, gone with the lab);
- two NICs with the declared MACs: veth pairs made here, the machine's ends moved into its network namespace;
  the data NIC's peer joins the lab's bridge (so VRRP and jumbo frames work as between QEMU machines), the
  management NIC's peer stays unattached and gets the same static 10.0.2.15/24 and no gateway;
- SSH on 127.0.0.1:PORT and the bundle at 10.0.2.100:80, through ``ironserve.lab.netns_forward``.
Its identity (hostname, root's key, host keys, NIC files) is written into its overlay before boot, because no
kernel command line reaches it; the image's seed unit is masked there.

On these hosts /run is not a tmpfs and no system bus runs: nspawn needs a tmpfs at /run/systemd/nspawn and
``--register=no --keep-unit``; no udev either, hence the interfaces are moved in by us after start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ironserve import paths
from ironserve.commands import run_step
from ironserve.lab import image, processes, vm
from ironserve.lab.spec import BUNDLE_GUEST_ADDRESS, MGMT_GUEST_ADDRESS, MGMT_PREFIX, Machine

NSPAWN_STATE = Path("/run/systemd/nspawn")
START_TIMEOUT = 30.0


class LightError(RuntimeError):
    """A light machine could not be started; the message says which step and why."""


@dataclass(frozen=True)
class LightPlan:
    machine: Machine
    folder: Path
    ssh_port: int
    data_peer: str  # host end of the data NIC's veth, on the lab bridge
    mgmt_peer: str  # host end of the management NIC's veth, attached to nothing
    data_mtu: int
    public_key: str
    backing_raw: Path
    bundle_port: int | None

    @property
    def root(self) -> Path:
        return self.folder / "root"

    @property
    def console_log(self) -> Path:
        return self.folder / "console.log"


def raw_disk(qcow2: Path) -> Path:
    """The qcow2 disk (its backing chain flattened) as a sparse raw file beside it, made once: nspawn and the
    loop device read raw."""
    raw = qcow2.with_suffix(".raw")
    with paths.cache_lock(f"raw-{qcow2.parent.name}"):
        if not raw.exists():
            partial = raw.with_suffix(".raw.partial")
            _run("qemu-img convert", ["qemu-img", "convert", "-O", "raw", str(qcow2), str(partial)])
            partial.chmod(0o444)
            partial.rename(raw)
    return raw


def _run(step: str, argv: list[str]) -> subprocess.CompletedProcess:
    return run_step(step, argv, LightError)


def _mounted(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode == 0


def ensure_nspawn_state() -> None:
    """nspawn keeps its runtime state in /run/systemd/nspawn, which must be a tmpfs (on these hosts it is not)."""
    if shutil.which("systemd-nspawn") is None:
        raise LightError("systemd-nspawn is not installed (Debian package systemd-container; run 'make setup')")
    NSPAWN_STATE.mkdir(parents=True, exist_ok=True)
    if not _mounted(NSPAWN_STATE):
        _run("mount nspawn's runtime tmpfs", ["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(NSPAWN_STATE)])


def _network_file(mac: str, body: str) -> str:
    return f"[Match]\nMACAddress={mac}\n\n{body}"


def write_identity(plan: LightPlan) -> None:
    """Hostname, root's key, host keys and NIC files, in the machine's overlay (what the seed unit does at a
    QEMU machine's boot, from its kernel command line)."""
    root, machine = plan.root, plan.machine
    (root / "etc/hostname").write_text(machine.name + "\n")
    hosts = root / "etc/hosts"
    line = f"127.0.1.1 {machine.name}\n"
    if line not in hosts.read_text():  # written again at each power-on (power_off/start)
        hosts.write_text(hosts.read_text() + line)
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_text(plan.public_key)
    (ssh / "authorized_keys").chmod(0o600)
    _run("host keys", ["ssh-keygen", "-A", "-f", str(root)])
    # A container has no root block device, so the image's MODULES=dep (ironserve/lab/image.py) makes every
    # initramfs rebuild a package triggers fail ("failed to determine device for /"); MODULES=most needs none, and
    # at native speed its cost does not matter. Found when amdgpu's firmware package rebuilt the initramfs.
    initramfs = root / image.LAB_INITRAMFS_CONF.lstrip("/")
    initramfs.parent.mkdir(parents=True, exist_ok=True)
    initramfs.write_text("# ironserve lab, light machine: see ironserve/lab/light.py\nMODULES=most\n")
    seed = root / "etc/systemd/system/ironserve-lab-seed.service"
    seed.unlink(missing_ok=True)
    seed.symlink_to("/dev/null")
    network = root / "etc/systemd/network"
    network.mkdir(parents=True, exist_ok=True)
    (network / "50-lab-mgmt.network").write_text(
        _network_file(
            machine.mgmt_mac,
            f"[Network]\nAddress={MGMT_GUEST_ADDRESS}/{MGMT_PREFIX}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
        )
    )
    (network / "90-lab-data.network").write_text(
        _network_file(
            machine.data_mac,
            f"[Link]\nMTUBytes={plan.data_mtu}\n\n[Network]\nLinkLocalAddressing=ipv6\nIPv6AcceptRA=no\n",
        )
    )


def _mount_root(plan: LightPlan) -> None:
    lower, upper, work = plan.folder / "lower", plan.folder / "upper", plan.folder / "work"
    for folder in (lower, upper, work, plan.root):
        folder.mkdir(parents=True, exist_ok=True)
    if not _mounted(lower):
        _run("mount the image read-only", ["mount", "-o", "loop,ro", str(plan.backing_raw), str(lower)])
    if not _mounted(plan.root):
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        _run("mount the machine's overlay", ["mount", "-t", "overlay", "overlay", "-o", options, str(plan.root)])


def _veth(peer: str, inside: str, mac: str, mtu: int) -> None:
    _run("make a veth pair", ["ip", "link", "add", peer, "type", "veth", "peer", "name", inside])
    _run("set the NIC's MAC", ["ip", "link", "set", inside, "address", mac, "mtu", str(mtu)])
    knob = Path("/proc/sys/net/ipv6/conf", peer, "disable_ipv6")
    if knob.exists():
        knob.write_text("1\n")  # no address of this machine's on a lab link
    _run("raise the veth", ["ip", "link", "set", peer, "mtu", str(mtu), "up"])


def _leader(nspawn_pid: int, timeout: float, plan: LightPlan) -> int:
    """The container's init: the child of nspawn that runs in a PID namespace of its own (nspawn first forks a
    short-lived helper that is still in ours; moving a NIC into that one's namespace fails once it exits).
    A failure quotes the console: with many light
    machines, systemd can run out of inotify instances ("Too many open files"; raise
    fs.inotify.max_user_instances, 128 on these hosts, about 6 per machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children")
        try:
            pids = children.read_text().split()
        except OSError:
            raise LightError(
                f"systemd-nspawn (pid {nspawn_pid}) exited at start. Console tail:\n{vm.console_tail(plan)}"
            ) from None
        ours = os.readlink("/proc/self/ns/pid")
        for pid in pids:
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") != ours:
                    return int(pid)
            except OSError:
                continue  # the helper exited meanwhile
        time.sleep(0.1)
    raise LightError(
        f"systemd-nspawn (pid {nspawn_pid}) started no container within {timeout:.0f} s. "
        f"Console tail:\n{vm.console_tail(plan)}"
    )


def nspawn_argv(plan: LightPlan) -> list[str]:
    return [
        "systemd-nspawn",
        "--boot",
        f"--directory={plan.root}",
        f"--machine={plan.machine.name}",
        "--register=no",
        "--keep-unit",
        "--private-network",
        "--console=passive",
    ]


def start(plan: LightPlan, data_bridge: str) -> dict:
    """Boot the machine; return its process ids (nspawn, the container's init, the forward helper)."""
    ensure_nspawn_state()
    _mount_root(plan)
    write_identity(plan)
    inside = {"data": plan.data_peer + "i", "mgmt": plan.mgmt_peer + "i"}
    _veth(plan.data_peer, inside["data"], plan.machine.data_mac, plan.data_mtu)
    _run("attach the data NIC to the lab bridge", ["ip", "link", "set", plan.data_peer, "master", data_bridge])
    _veth(plan.mgmt_peer, inside["mgmt"], plan.machine.mgmt_mac, 1500)
    with plan.console_log.open("a") as console:  # appended at each power-on
        nspawn = subprocess.Popen(
            nspawn_argv(plan),
            stdout=console,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        return _connect(plan, nspawn.pid, inside)
    except BaseException:
        # Not in the lab's state yet, so 'lab down' would not find it: stop it here.
        _signal_and_wait(nspawn.pid, plan.folder, signal.SIGTERM, 10)
        raise


def _connect(plan: LightPlan, nspawn_pid: int, inside: dict[str, str]) -> dict:
    """Move the NICs into the started machine and start its forwards; return its process ids."""
    leader = _leader(nspawn_pid, START_TIMEOUT, plan)
    for name in inside.values():
        _run("move a NIC into the machine", ["ip", "link", "set", name, "netns", str(leader)])
    _run(
        "bundle address inside",
        ["nsenter", "-t", str(leader), "-n", "ip", "addr", "add", f"{BUNDLE_GUEST_ADDRESS}/32", "dev", "lo"],
    )
    _run("loopback up inside", ["nsenter", "-t", str(leader), "-n", "ip", "link", "set", "lo", "up"])
    argv = [
        sys.executable,
        "-m",
        "ironserve.lab.netns_forward",
        "--netns-pid",
        str(leader),
        "--ssh-port",
        str(plan.ssh_port),
        "--folder",
        str(plan.folder),
    ]
    if plan.bundle_port is not None:
        argv += ["--bundle-port", str(plan.bundle_port)]
    with (plan.folder / "forward.log").open("w") as log:
        helper = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=paths.REPO_ROOT,
        )
    return {"pid": nspawn_pid, "leader_pid": leader, "forward_pid": helper.pid}


def is_ours(pid: int | None, folder: Path) -> bool:
    """True when pid is a process (nspawn or the forward helper) started for this machine's folder."""
    return processes.names(pid, str(folder))


def _signal_and_wait(pid: int | None, folder: Path, sig: int, grace: float) -> None:
    processes.stop(pid, lambda candidate: is_ours(candidate, folder), grace, sig)


def stop(entry: dict, grace: float = 20.0) -> None:
    """Power the machine off (nspawn turns SIGTERM into an orderly shutdown), stop its helper, unmount."""
    folder = Path(entry["folder"])
    _signal_and_wait(entry.get("forward_pid"), folder, signal.SIGTERM, 5)
    _signal_and_wait(entry.get("pid"), folder, signal.SIGTERM, grace)
    for mount in (folder / "root", folder / "lower"):
        if _mounted(mount):
            subprocess.run(["umount", str(mount)], capture_output=True, check=False)
    _remove_peers(entry, wait=0.0)


def _remove_peers(entry: dict, wait: float) -> None:
    """Delete the host ends of the machine's veth pairs, after up to ``wait`` seconds for them to go by themselves
    (they do when the machine's network namespace is freed, which the kernel does asynchronously)."""
    deadline = time.monotonic() + wait
    for peer in (entry.get("data_peer"), entry.get("mgmt_peer")):
        while peer and Path("/sys/class/net", peer).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if peer and Path("/sys/class/net", peer).exists():
            subprocess.run(["ip", "link", "del", peer], capture_output=True, check=False)


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def power_off(entry: dict, grace: float = 20.0) -> float:
    """Cut the machine's power (a node dying, not shutting down): SIGKILL to its init, which takes every process
    of its PID namespace with it, then its network namespace and NICs go. Its disk (the overlay) stays mounted,
    as a disk stays in a machine, for ``start`` to boot again. Returns when the kill was sent (time.time())."""
    folder = Path(entry["folder"])
    leader = entry.get("leader_pid")
    if not (leader and entry.get("pid") and _parent(leader) == entry["pid"]):
        raise LightError(f"{entry['name']}: its init (pid {leader}) is not nspawn's child (pid {entry.get('pid')})")
    # The forward helper first: it holds the machine's network namespace, where the kernel would go on answering
    # ARP for the machine's addresses after every process died.
    _signal_and_wait(entry.get("forward_pid"), folder, signal.SIGKILL, 5)
    killed = time.time()
    with contextlib.suppress(ProcessLookupError):
        os.kill(leader, signal.SIGKILL)
    _signal_and_wait(entry.get("pid"), folder, signal.SIGTERM, grace)
    _remove_peers(entry, wait=grace)
    return killed


def unfinished_boot(entry: dict) -> str:
    """What the machine's systemd is still waiting for (its job list), for the record of a boot that hung; a systemd
    that does not answer within 15 s says so itself."""
    leader = entry.get("leader_pid")
    argv = ["nsenter", "-t", str(leader), "-a", "systemctl", "list-jobs", "--no-pager", "--no-legend"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    except subprocess.TimeoutExpired:
        return "its systemd did not answer within 15 s"
    return (result.stdout + result.stderr).strip() or "no job left"


def wipe(entry: dict) -> None:
    """Drop what the machine wrote (its overlay's upper layer); the read-only image below stays. It must be off."""
    folder = Path(entry["folder"])
    for mount in (folder / "root", folder / "lower"):
        if _mounted(mount):
            _run("unmount the machine's disk", ["umount", str(mount)])
    for layer in ("upper", "work"):
        shutil.rmtree(folder / layer, ignore_errors=True)


def lab_mounts(scope: Path) -> list[str]:
    """Mount points under ``scope`` (a lab's folder or all of them): what a light machine can leave behind."""
    marker = str(scope) + "/"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    return sorted({line.split()[1] for line in lines if len(line.split()) > 1 and line.split()[1].startswith(marker)})
