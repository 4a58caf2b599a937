"""A light machine whose boot hangs after a power cut is recorded (what its systemd still waited for) and powered on
once more; a second hang fails with the machine's console, as before."""

from __future__ import annotations

import json

import pytest

from ironserve.lab import lab, light, vm
from ironserve.lab.spec import lab_from_platforms

PLATFORMS = [
    {"name": "front-a", "kind": "light", "cpus": 1, "memory_mb": 512, "mgmt_mac": "52:54:00:5f:00:01",
     "data_mac": "52:54:00:5f:01:01"},
]  # fmt: skip


@pytest.fixture
def powered_off(tmp_path, monkeypatch):
    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    spec = lab_from_platforms("t", PLATFORMS)
    folder = lab.lab_folder("t")
    (folder / "front-a").mkdir(parents=True)
    (tmp_path / "key.pub").write_text("ssh-ed25519 AAAA test\n")
    entry = {"name": "front-a", "kind": "light", "pid": None, "leader_pid": None, "forward_pid": None,
             "ssh_port": 2222, "folder": str(folder / "front-a"), "data_peer": "isvtest0", "mgmt_peer": "isvtest0m",
             "backing": str(tmp_path / "disk.qcow2")}  # fmt: skip
    state = {"name": "t", "spec": spec.to_dict(), "bridge": "isvtestbr", "ssh_key": str(tmp_path / "key"),
             "bundle_server_port": None, "machines": [entry]}  # fmt: skip
    lab.state_file("t").write_text(json.dumps(state))
    monkeypatch.setattr(light, "raw_disk", lambda backing: backing)
    monkeypatch.setattr(light, "is_ours", lambda pid, folder: False)
    calls: list[str] = []
    starts = iter(range(100, 200))
    monkeypatch.setattr(light, "start", lambda plan, bridge: calls.append("start") or {"pid": next(starts)})
    monkeypatch.setattr(light, "stop", lambda entry, grace: calls.append(f"stop {entry['pid']}"))
    monkeypatch.setattr(light, "unfinished_boot", lambda entry: "1 systemd-journal-flush.service start running")
    return calls


def test_a_hung_boot_is_recorded_and_the_machine_powered_on_once_more(powered_off, monkeypatch, capsys):
    timeouts = []

    def wait(plan, key, pid, timeout, alive):
        timeouts.append(timeout)
        if len(timeouts) == 1:
            raise vm.VmError("front-a: no SSH on 127.0.0.1:2222 after 120 s. Console tail (...):\nStarting ...")
        return 2.5

    monkeypatch.setattr(vm, "wait_for_ssh", wait)
    assert lab.power_on("t", "front-a") == 2.5
    assert powered_off == ["start", "stop 100", "start"]
    assert timeouts == [lab.LIGHT_BOOT_TIMEOUT, lab.DEFAULT_BOOT_TIMEOUT]
    note = capsys.readouterr().err
    assert "front-a did not boot (front-a: no SSH on 127.0.0.1:2222 after 120 s." in note
    assert "its systemd's jobs: 1 systemd-journal-flush.service start running; powered off and on once more" in note
    console = (lab.lab_folder("t") / "front-a" / "console.log").read_text()
    assert "[ironserve] lab t: front-a did not boot" in console
    assert json.loads(lab.state_file("t").read_text())["machines"][0]["pid"] == 101


def test_a_second_hang_fails_with_the_console(powered_off, monkeypatch):
    def wait(plan, key, pid, timeout, alive):
        raise vm.VmError(f"front-a: no SSH after {timeout:.0f} s")

    monkeypatch.setattr(vm, "wait_for_ssh", wait)
    with pytest.raises(vm.VmError, match="after 420 s"):
        lab.power_on("t", "front-a")
    assert powered_off == ["start", "stop 100", "start"]
