"""One lab machine as a QEMU process: its command line, start, readiness and stop."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ironserve.lab import processes
from ironserve.lab.image import BaseImage
from ironserve.lab.spec import BUNDLE_GUEST_ADDRESS, BUNDLE_GUEST_PORT, MGMT_GUEST_ADDRESS, MGMT_PREFIX, Machine

CONSOLE_TAIL_LINES = 30


class VmError(RuntimeError):
    """A machine failed to start or to become reachable; the message quotes its console."""


class KernelPanic(VmError):
    """The guest's kernel panicked while booting (its console says so): the machine will never answer."""


# Seen once under TCG with two vCPUs: "Oops: int3" in sched_clock_cpu 1.7 s into an unmodified Debian kernel's
# boot, then this line; the same image booted at once on the next try.
KERNEL_PANIC = "Kernel panic - not syncing"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# Under TCG every guest instruction is translated, so the CPU the guest is offered decides which code it runs, and
# what that costs: "max" offers AVX2 (glibc's string functions take it) and 5-level paging. Measured here
# (docs/bench.md; the same workload on one machine after the other, twice): x86-64-v2 without AVX, with the guest's
# speculation mitigations off, ran Python imports 2.7x, fork/exec 2.35x, apt-cache 2.4x and gzip 2x faster than
# "max", and booted to SSH in 60 s against 98 s. Which of the changes buys what was not separated.
TCG_CPU = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16"
# Lab machines run nothing but the bench's own tests; retpolines and their kin only cost time under TCG.
LAB_KERNEL_OPTIONS = "mitigations=off"


def accelerator(flags: set[str] | None = None) -> list[str]:
    """KVM only when the CPU offers hardware virtualisation: on hosts without vmx/svm KVM guests hang at
    kernel start (measured), so those use TCG."""
    flags = cpu_flags() if flags is None else flags
    if ({"vmx", "svm"} & flags) and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", TCG_CPU]


@dataclass(frozen=True)
class MachinePlan:
    """Everything needed to start one machine; paths are inside the lab's folder."""

    machine: Machine
    folder: Path
    ssh_port: int
    tap: str
    data_mtu: int
    public_key: str
    bundle_forwarder: Path | None
    # The disk this machine's copy-on-write overlay sits on: the base image's, or a machine layer's.
    backing: Path | None = None

    @property
    def overlay(self) -> Path:
        return self.folder / "root.qcow2"

    @property
    def console_log(self) -> Path:
        return self.folder / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.folder / "qemu.pid"

    @property
    def qemu_log(self) -> Path:
        return self.folder / "qemu.log"

    def disk_path(self, kind: str, index: int) -> Path:
        return self.folder / f"{kind}{index}.qcow2"


def kernel_command_line(plan: MachinePlan) -> str:
    machine = plan.machine
    key = base64.b64encode(plan.public_key.strip().encode()).decode()
    return " ".join(
        [
            "root=/dev/vda",
            "rw",
            "console=ttyS0",
            "net.ifnames=1",
            LAB_KERNEL_OPTIONS,
            f"ironserve.hostname={machine.name}",
            f"ironserve.sshkey={key}",
            f"ironserve.mgmt_mac={machine.mgmt_mac}",
            f"ironserve.mgmt_addr={MGMT_GUEST_ADDRESS}/{MGMT_PREFIX}",
            f"ironserve.data_mac={machine.data_mac}",
            f"ironserve.data_mtu={plan.data_mtu}",
        ]
    )


def qemu_argv(plan: MachinePlan, image: BaseImage, accel: list[str]) -> list[str]:
    machine = plan.machine
    mgmt = f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{plan.ssh_port}-:22"
    if plan.bundle_forwarder is not None:
        # The cmd form starts one forwarder per connection, so the bundle server may start after the VM.
        mgmt += f",guestfwd=tcp:{BUNDLE_GUEST_ADDRESS}:{BUNDLE_GUEST_PORT}-cmd:{plan.bundle_forwarder}"
    argv = [
        "qemu-system-x86_64",
        "-name",
        machine.name,
        "-machine",
        "q35",
        *accel,
        "-smp",
        str(machine.cpus),
        "-m",
        str(machine.memory_mb),
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        f"file:{plan.console_log}",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        kernel_command_line(plan),
        "-drive",
        f"file={plan.overlay},if=virtio,format=qcow2,cache=unsafe",
        "-netdev",
        mgmt,
        "-device",
        f"virtio-net-pci,netdev=mgmt,mac={machine.mgmt_mac}",
        "-netdev",
        f"tap,id=data,ifname={plan.tap},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev=data,mac={machine.data_mac},host_mtu={plan.data_mtu}",
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "virtio-rng-pci,rng=rng0",
        "-pidfile",
        str(plan.pidfile),
        "-daemonize",
    ]
    for index, disk in enumerate(machine.nvme):
        drive = f"nvme{index}"
        argv += [
            "-drive",
            f"file={plan.disk_path('nvme', index)},if=none,id={drive},format=qcow2,cache=unsafe",
            "-device",
            f"nvme,drive={drive},serial={disk.serial}",
        ]
    if machine.hdd:
        argv += ["-device", "virtio-scsi-pci,id=scsi0"]
    for index, disk in enumerate(machine.hdd):
        drive = f"hdd{index}"
        argv += [
            "-drive",
            f"file={plan.disk_path('hdd', index)},if=none,id={drive},format=qcow2,cache=unsafe",
            "-device",
            f"scsi-hd,drive={drive},bus=scsi0.0,serial={disk.serial},rotation_rate={disk.rotation_rate}",
        ]
    return argv


def _qemu_img_create(path: Path, size: str | None, backing: Path | None = None) -> None:
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        argv += ["-b", str(backing), "-F", "qcow2"]
    argv.append(str(path))
    if size is not None:
        argv.append(size)
    subprocess.run(argv, check=True, capture_output=True, text=True)


def prepare_disks(plan: MachinePlan, image: BaseImage) -> None:
    """A copy-on-write overlay over the base image (or the machine's layer), and blank drives of the declared sizes."""
    plan.folder.mkdir(parents=True, exist_ok=True)
    if not plan.overlay.exists():
        _qemu_img_create(plan.overlay, None, backing=plan.backing or image.disk)
    for kind, disks in (("nvme", plan.machine.nvme), ("hdd", plan.machine.hdd)):
        for index, disk in enumerate(disks):
            path = plan.disk_path(kind, index)
            if not path.exists():
                _qemu_img_create(path, f"{disk.size_gb}G")


def start(plan: MachinePlan, image: BaseImage, accel: list[str]) -> int:
    prepare_disks(plan, image)
    argv = qemu_argv(plan, image, accel)
    with plan.qemu_log.open("w") as log:
        result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise VmError(f"{plan.machine.name}: qemu exited {result.returncode}:\n{plan.qemu_log.read_text()[-2000:]}")
    return read_pid(plan.pidfile)


def read_pid(pidfile: Path) -> int:
    return int(pidfile.read_text().strip())


def is_our_qemu(pid: int, folder: Path) -> bool:
    """True when pid is a QEMU started for this folder (guards against a reused pid)."""
    argv = processes.cmdline(pid)
    return bool(argv) and b"qemu-system" in argv[0] and any(str(folder).encode() in arg for arg in argv)


def _console_text(plan) -> str:
    try:
        return plan.console_log.read_text(errors="replace")
    except OSError:
        return ""


def console_tail(plan: MachinePlan, lines: int = CONSOLE_TAIL_LINES) -> str:
    text = _console_text(plan)
    return "\n".join(text.splitlines()[-lines:]) if text else "(no console output)"


def ssh_argv(port: int, key: Path, *command: str) -> list[str]:
    return [
        "ssh",
        "-i",
        str(key),
        "-p",
        str(port),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=5",
        "root@127.0.0.1",
        *command,
    ]


def wait_for_ssh(plan, key: Path, pid: int, timeout: float, alive=is_our_qemu) -> float:
    """Block until root can log in over SSH; return the seconds it took. Raise with the console tail.
    ``plan``: a QEMU or a light machine's plan; ``alive(pid, folder)``: whether its process still runs."""
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if not alive(pid, plan.folder):
            raise VmError(
                f"{plan.machine.name}: its machine (pid {pid}) died while booting. Console tail:\n{console_tail(plan)}"
            )
        if KERNEL_PANIC in _console_text(plan):
            raise KernelPanic(
                f"{plan.machine.name}: its kernel panicked while booting. Console tail:\n{console_tail(plan)}"
            )
        if elapsed > timeout:
            raise VmError(
                f"{plan.machine.name}: no SSH on 127.0.0.1:{plan.ssh_port} after {timeout:.0f} s. "
                f"Console tail ({plan.console_log}):\n{console_tail(plan)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", plan.ssh_port), timeout=2) as sock:
                sock.settimeout(5)
                banner = sock.recv(64)
        except OSError:
            banner = b""
        if banner.startswith(b"SSH-"):
            result = subprocess.run(ssh_argv(plan.ssh_port, key, "true"), capture_output=True, timeout=30)
            if result.returncode == 0:
                return time.monotonic() - started
        time.sleep(2)


def stop(pid: int, folder: Path, grace: float = 10.0) -> None:
    """Stop a machine's QEMU by pid: TERM, then KILL after the grace period."""
    processes.stop(pid, lambda candidate: is_our_qemu(candidate, folder), grace)
