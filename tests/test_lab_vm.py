"""The QEMU command line: emulated hardware as declared, networks that reach nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironserve.lab import vm
from ironserve.lab.image import BaseImage
from ironserve.lab.segment import interface_names, is_lab_interface, mgmt_peer_name
from ironserve.lab.spec import lab_from_dict

LAB = lab_from_dict(
    {
        "name": "unit",
        "machines": [
            {
                "name": "gpu-a",
                "cpus": 4,
                "memory_mb": 2048,
                "nvme": [{"serial": "N0", "size_gb": 2}, {"serial": "N1", "size_gb": 3}],
                "hdd": [{"serial": "H0", "size_gb": 8, "rotation_rate": 10000}],
            }
        ],
    }
)


def _plan(tmp_path: Path, forwarder: Path | None = None) -> vm.MachinePlan:
    return vm.MachinePlan(
        machine=LAB.machines[0],
        folder=tmp_path / "gpu-a",
        ssh_port=22555,
        tap="isvtest0",
        data_mtu=9000,
        public_key="ssh-ed25519 AAAATEST ironserve-lab",
        bundle_forwarder=forwarder,
    )


def _options(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_devices_follow_the_declaration(tmp_path):
    argv = vm.qemu_argv(_plan(tmp_path), BaseImage(tmp_path / "img"), ["-accel", "tcg"])
    devices = _options(argv, "-device")
    assert [d for d in devices if d.startswith("nvme,")] == ["nvme,drive=nvme0,serial=N0", "nvme,drive=nvme1,serial=N1"]
    assert "scsi-hd,drive=hdd0,bus=scsi0.0,serial=H0,rotation_rate=10000" in devices
    assert f"virtio-net-pci,netdev=data,mac={LAB.machines[0].data_mac},host_mtu=9000" in devices
    assert f"virtio-net-pci,netdev=mgmt,mac={LAB.machines[0].mgmt_mac}" in devices
    assert _options(argv, "-smp") == ["4"]
    assert _options(argv, "-m") == ["2048"]
    drives = _options(argv, "-drive")
    assert drives[0].startswith(f"file={tmp_path}/gpu-a/root.qcow2,if=virtio")
    assert len(drives) == 4


def test_management_network_is_restricted_and_loopback_only(tmp_path):
    forwarder = tmp_path / "fwd"
    argv = vm.qemu_argv(_plan(tmp_path, forwarder), BaseImage(tmp_path / "img"), [])
    user, tap = _options(argv, "-netdev")
    options = user.split(",")
    assert options[:3] == ["user", "id=mgmt", "restrict=on"]
    assert "hostfwd=tcp:127.0.0.1:22555-:22" in options
    assert f"guestfwd=tcp:10.0.2.100:80-cmd:{forwarder}" in options
    assert tap == "tap,id=data,ifname=isvtest0,script=no,downscript=no"


def test_without_a_bundle_there_is_no_forward(tmp_path):
    argv = vm.qemu_argv(_plan(tmp_path), BaseImage(tmp_path / "img"), [])
    assert "guestfwd" not in _options(argv, "-netdev")[0]


def test_kernel_command_line_carries_identity(tmp_path):
    line = vm.kernel_command_line(_plan(tmp_path))
    assert "ironserve.hostname=gpu-a" in line
    assert "ironserve.mgmt_addr=10.0.2.15/24" in line
    assert "mitigations=off" in line.split()  # lab machines only: see vm.LAB_KERNEL_OPTIONS
    assert f"ironserve.data_mac={LAB.machines[0].data_mac}" in line
    assert " " not in line.split("ironserve.sshkey=")[1].split()[0]


@pytest.mark.parametrize(
    ("flags", "kvm_usable", "expected"),
    [
        ({"fpu", "sse2"}, True, ["-accel", "tcg,thread=multi", "-cpu", vm.TCG_CPU]),
        ({"fpu", "vmx"}, False, ["-accel", "tcg,thread=multi", "-cpu", vm.TCG_CPU]),
        ({"fpu", "vmx"}, True, ["-accel", "kvm", "-cpu", "host"]),
        ({"svm"}, True, ["-accel", "kvm", "-cpu", "host"]),
    ],
)
def test_kvm_only_with_hardware_virtualisation(monkeypatch, flags, kvm_usable, expected):
    monkeypatch.setattr(vm.os, "access", lambda path, mode: kvm_usable)
    assert vm.accelerator(flags) == expected


def test_interface_names_fit_linux_and_differ_between_labs():
    bridge, taps = interface_names("a-very-long-lab-name-indeed", ["m1", "m2"])
    assert all(len(name) <= 15 for name in [bridge, *taps.values()])
    other_bridge, _ = interface_names("another-lab", ["m1"])
    assert bridge != other_bridge
    assert len(set(taps.values())) == 2


def test_is_our_qemu_refuses_foreign_pids(tmp_path):
    assert not vm.is_our_qemu(1, tmp_path)
    assert not vm.is_our_qemu(2**22 + 7, tmp_path)


def test_lab_interfaces_are_recognised_for_cleanup():
    bridge, taps = interface_names("demo", ["a", "b"])
    light_veths = [mgmt_peer_name(taps["a"]), mgmt_peer_name(taps["a"]) + "i", taps["b"] + "i"]
    assert all(len(name) <= 15 for name in light_veths)
    assert all(is_lab_interface(name) for name in [bridge, *taps.values(), *light_veths])
    assert not any(is_lab_interface(name) for name in ["eth0", "isv-other", "docker0", "isv123456br0"])


def test_same_lab_name_in_two_state_folders_gets_two_bridges(tmp_path, monkeypatch):
    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path / "one"))
    first, _ = interface_names("mol-smoke", ["a"])
    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path / "two"))
    second, _ = interface_names("mol-smoke", ["a"])
    assert first != second


def _light_plan(folder, bundle_port=8080):
    from ironserve.lab import light
    from ironserve.lab.spec import Machine

    return light.LightPlan(
        machine=Machine(name="front-a", kind="light", mgmt_mac="52:54:00:00:00:01", data_mac="52:54:00:00:00:02"),
        folder=folder,
        ssh_port=2222,
        data_peer="isv000000t0",
        mgmt_peer="isv000000m0",
        data_mtu=9000,
        public_key="ssh-ed25519 AAAA test\n",
        backing_raw=folder.parent / "rootfs.raw",
        bundle_port=bundle_port,
    )


def test_a_light_machine_boots_under_nspawn_without_registering_and_without_a_network_of_the_host(tmp_path):
    from ironserve.lab import light

    plan = _light_plan(tmp_path / "front-a")
    argv = light.nspawn_argv(plan)
    assert argv[:2] == ["systemd-nspawn", "--boot"]
    # No system bus on these hosts: nothing to register with, and the process keeps its own scope.
    assert {"--register=no", "--keep-unit", "--private-network", f"--directory={plan.root}"} <= set(argv)
    assert light.is_ours(None, plan.folder) is False


def test_a_light_machine_gets_its_identity_written_before_boot(tmp_path):
    from ironserve.lab import light

    plan = _light_plan(tmp_path / "m", bundle_port=None)
    root = plan.root
    for folder in ("etc/systemd/system", "etc/ssh"):
        (root / folder).mkdir(parents=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    light.write_identity(plan)
    assert (root / "etc/hostname").read_text() == "front-a\n"
    assert "127.0.1.1 front-a" in (root / "etc/hosts").read_text()
    assert (root / "root/.ssh/authorized_keys").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/ssh/ssh_host_ed25519_key").exists()
    assert str((root / "etc/systemd/system/ironserve-lab-seed.service").readlink()) == "/dev/null"
    mgmt = (root / "etc/systemd/network/50-lab-mgmt.network").read_text()
    assert "MACAddress=52:54:00:00:00:01" in mgmt
    assert "Address=10.0.2.15/24" in mgmt
    assert "MTUBytes=9000" in (root / "etc/systemd/network/90-lab-data.network").read_text()
    # No root block device in a container: initramfs rebuilds need MODULES=most, not the QEMU image's dep.
    assert "MODULES=most" in (root / "etc/initramfs-tools/conf.d/ironserve-lab.conf").read_text()


def test_a_kernel_panic_at_boot_is_told_at_once_not_after_the_ssh_timeout(tmp_path):
    plan = _plan(tmp_path)
    plan.folder.mkdir()
    plan.console_log.write_text(
        "[    1.746884] Oops: int3: 0000 [#2] PREEMPT SMP NOPTI\n"
        "[    1.747080] Kernel panic - not syncing: Fatal exception in interrupt\n"
    )
    with pytest.raises(vm.KernelPanic) as panicked:
        vm.wait_for_ssh(plan, tmp_path / "key", 1, timeout=600, alive=lambda _pid, _folder: True)
    assert "gpu-a: its kernel panicked while booting" in str(panicked.value)
    assert "Oops: int3" in str(panicked.value)
