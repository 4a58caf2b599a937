"""The ironserve command: bad input is refused before anything happens, with exit code 2."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from ironserve import cli


def test_bad_lab_declaration_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path / "home"))
    declaration = tmp_path / "lab.yml"
    declaration.write_text("name: t\nmachines:\n  - name: a\n    nvme: [{serial: X, size_gb: 0}]\n")
    assert cli.main(["lab", "up", "--file", str(declaration)]) == cli.EXIT_BAD_INPUT
    assert "machine a: nvme[0].size_gb must be a whole number from 1 to 4096, got 0" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()


def test_status_without_labs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    assert cli.main(["lab", "status"]) == cli.EXIT_OK
    assert capsys.readouterr().out.strip() == "no lab is up"


def test_ssh_to_a_lab_that_is_not_up(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    assert cli.main(["lab", "ssh", "nolab", "m1"]) == cli.EXIT_BAD_INPUT
    assert "lab nolab is not up" in capsys.readouterr().err


def test_down_of_a_lab_that_is_not_up_is_harmless(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    assert cli.main(["lab", "down", "nolab"]) == cli.EXIT_OK
    assert "not up" in capsys.readouterr().out


def test_down_keeps_the_consoles_of_the_qemu_machines_of_that_lab_only(tmp_path, monkeypatch):
    from ironserve.lab import lab

    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    machines = []
    for name, kind in (("m1", "qemu"), ("m2", "light")):
        folder = tmp_path / "labs" / "mine" / name
        folder.mkdir(parents=True)
        (folder / "console.log").write_text(f"{name} booted\n")
        machines.append({"name": name, "kind": kind, "folder": str(folder)})
    (tmp_path / "consoles" / "mine").mkdir(parents=True)
    (tmp_path / "consoles" / "mine" / "old.log").write_text("an earlier lab of that name\n")
    lab._keep_consoles("mine", {"machines": machines})
    kept = tmp_path / "consoles" / "mine"
    assert sorted(p.name for p in kept.iterdir()) == ["m1.log"]
    assert (kept / "m1.log").read_text() == "m1 booted\n"


def test_leftovers_of_one_lab(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    (tmp_path / "labs" / "mine").mkdir(parents=True)
    (tmp_path / "labs" / "other").mkdir()
    assert cli.main(["lab", "leftovers", "mine"]) == cli.EXIT_ENVIRONMENT
    assert capsys.readouterr().out.strip() == f"left behind: lab folder {tmp_path}/labs/mine"
    (tmp_path / "labs" / "mine").rmdir()
    assert cli.main(["lab", "leftovers", "mine"]) == cli.EXIT_OK
    assert cli.main(["lab", "leftovers"]) == cli.EXIT_ENVIRONMENT
    assert f"lab folder {tmp_path}/labs/other" in capsys.readouterr().out


def test_prune_removes_stale_images_and_layers_and_keeps_current_ones(tmp_path, monkeypatch, capsys):
    from ironserve.lab import image, layers

    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    current_image = tmp_path / "images" / f"debian-{image.SUITE}-{image.image_key()}"
    (current_image).mkdir(parents=True)
    (current_image / "rootfs.qcow2").write_bytes(b"root")
    (tmp_path / "images" / f"debian-{image.SUITE}-0000000000000000").mkdir()
    current = layers.image_for("base", layers.current_keys()["base"])
    stale = layers.image_for("base", "0123456789abcdef")
    for layer in (current, stale):
        layer.folder.mkdir(parents=True)
        layer.disk.write_bytes(b"layer")
        layer.manifest.write_text(f'{{"backing": "{current_image / "rootfs.qcow2"}"}}')
    assert cli.main(["lab", "prune"]) == cli.EXIT_OK
    assert "pruned 2 cache entries" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [current_image.name]
    assert sorted(p.name for p in (tmp_path / "layers").iterdir()) == [current.folder.name]
    assert cli.main(["lab", "prune", "--max-gb", "0"]) == cli.EXIT_BAD_INPUT
    assert "--max-gb must be more than 0" in capsys.readouterr().err


def test_plan_gpu_takes_an_exact_name_before_a_prefix(capsys):
    # Names that are prefixes of others: the exact one wins ('L4' is not 'L40', 'A10' not 'A100', 'H20' not 'H200');
    # family words may be left out ('T4' is the Tesla T4, 'MI300X' the Instinct MI300X).
    cases = (
        ("L4", "L4"),
        ("L40", "L40"),
        ("A10", "A10"),
        ("H20", "H20 96GB"),
        ("h200 sxm", "H200 SXM 141GB"),
        ("T4", "Tesla T4"),
        ("RTX 4090", "GeForce RTX 4090"),
        ("MI300X", "Instinct MI300X"),
    )
    for gpu, model in cases:
        assert cli.main(["plan", "--gpu", gpu, "--count", "8", "--json"]) == cli.EXIT_OK, capsys.readouterr().err
        reasons = json.loads(capsys.readouterr().out)["reasons"]
        assert reasons[0].startswith(f"8 x {model}:"), (gpu, reasons[0])


def test_plan_gpu_that_is_ambiguous_or_unknown_lists_the_models(capsys):
    assert cli.main(["plan", "--gpu", "A100", "--count", "8"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert (
        "--gpu 'A100' must name one GPU model; it could be any of A100 PCIe 40GB, A100 PCIe 80GB, A100 SXM4 40GB, "
        "A100 SXM4 80GB\n" in err
    ), err
    assert cli.main(["plan", "--gpu", "Z9000", "--count", "8"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "the models the planner sizes are " in err
    assert "H200 SXM 141GB" in err


def test_plan_nodes_the_planner_would_not_use_are_refused(capsys):
    # 3 x 8 GPUs: tensor parallelism must divide R1's 128 heads, so 24 GPUs cannot be one engine; the plan is TP8 on
    # one node, and the two other nodes would be left out, silently.
    assert cli.main(["plan", "--gpu", "H200 SXM", "--count", "8", "--nodes", "3"]) == cli.EXIT_BAD_INPUT
    assert "3 nodes were asked for, and deepseek-r1-fp8 runs on 1 (TP8 of 8 GPUs per node)" in capsys.readouterr().err
    # 2 x 8 x H100 80GB: R1 in FP8 needs both nodes (TP16).
    assert cli.main(["plan", "--gpu", "H100 SXM", "--count", "8", "--nodes", "2"]) == cli.EXIT_OK
    assert "over 2 nodes" in capsys.readouterr().out


def test_run_refuses_an_empty_stage_list_instead_of_running_every_stage(tmp_path, capsys):
    for stages in ("", " ", "base,,gpu"):
        assert cli.main(["run", "--inventory", str(tmp_path), "--stages", stages, "--plain"]) == cli.EXIT_BAD_INPUT
        assert "names an empty stage: give stage names separated by commas, like base,gpu" in capsys.readouterr().err


def test_stage_names_may_have_spaces_after_their_commas():
    from ironserve import stages

    assert stages.parse_names("base, gpu ,storage") == ["base", "gpu", "storage"]


def test_run_without_an_inventory_names_the_option_and_provisions_nothing(capsys):
    assert cli.main(["run", "--stages", "base", "--plain"]) == cli.EXIT_BAD_INPUT
    assert "name the inventory to provision: ironserve run --inventory PATH" in capsys.readouterr().err


def test_doctor_and_run_answer_a_missing_inventory_alike(tmp_path, capsys):
    missing = str(tmp_path / "no-such-inventory")
    assert cli.main(["doctor", "--inventory", missing, "--skip-reachability"]) == cli.EXIT_BAD_INPUT
    assert f"inventory {missing} does not exist" in capsys.readouterr().err
    assert cli.main(["run", "--inventory", missing, "--plain"]) == cli.EXIT_BAD_INPUT
    assert f"inventory {missing} does not exist" in capsys.readouterr().err


def test_report_json_prints_its_error_as_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IRONSERVE_ARTIFACTS_DIR", str(tmp_path))
    assert cli.main(["report", "--json", "no-such-run"]) == cli.EXIT_BAD_INPUT
    answer = json.loads(capsys.readouterr().out)
    assert answer["error"].startswith("no run no-such-run under ")


def test_every_option_and_argument_has_help_text():
    import argparse

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(cli.build_parser(), "ironserve")
    assert missing == []


def test_forward_refuses_what_it_cannot_do_before_starting_anything(tmp_path, monkeypatch, capsys):
    from ironserve.lab import lab

    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    assert cli.main(["lab", "forward", "demo", "gpu-a", "8443", "10.99.0.100"]) == cli.EXIT_BAD_INPUT
    assert "target '10.99.0.100' is not HOST:PORT" in capsys.readouterr().err
    assert cli.main(["lab", "forward", "demo", "gpu-a", "8443", "10.99.0.100:443"]) == cli.EXIT_BAD_INPUT
    assert "no lab named demo" in capsys.readouterr().err
    lab.lab_folder("demo").mkdir(parents=True)
    lab.state_file("demo").write_text(json.dumps({"machines": [{"name": "gpu-a", "ssh_port": 22101}]}))
    assert cli.main(["lab", "forward", "demo", "gpu-c", "8443", "10.99.0.100:443"]) == cli.EXIT_BAD_INPUT
    assert "lab demo has no machine gpu-c (gpu-a)" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["lab", "forward", "demo", "gpu-a", str(port), "10.99.0.100:443"]) == cli.EXIT_BAD_INPUT
    assert f"127.0.0.1:{port} is taken on this machine" in capsys.readouterr().err


def _named_process(log: Path):
    """A process whose command line names ``log`` as a forward's ssh does, returned once it has exec'd: until then
    its /proc cmdline is the parent's, and a check of it races the child (seen on a loaded machine)."""
    import subprocess
    import sys
    import time

    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-E", str(log)])
    deadline = time.monotonic() + 10
    while str(log).encode() not in Path(f"/proc/{process.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the stand-in forward did not start"
        time.sleep(0.01)
    return process


@pytest.fixture
def demo_forward(tmp_path, monkeypatch):
    """The demo lab's folder with a process named like its forward from port 8443 (its log in the lab's folder is in
    its argv, as ssh's -E is): yields the lab module, the log and the process, killed at the end."""
    from ironserve.lab import lab

    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    folder = lab.lab_folder("demo")
    folder.mkdir(parents=True)
    log = folder / "forward-8443.log"
    forwarder = _named_process(log)
    yield lab, log, forwarder
    forwarder.kill()


def test_down_stops_the_labs_forwards_and_leftovers_sees_one_left(demo_forward):
    lab, log, forwarder = demo_forward
    state = {"machines": [], "bridge": "isv000000br", "taps": [], "forwards": [{"pid": forwarder.pid, "log": str(log)}]}
    lab.state_file("demo").write_text(json.dumps(state))
    assert any(str(forwarder.pid) in line for line in lab.leftovers("demo"))
    assert lab.down("demo", log=lambda _message: None)
    assert forwarder.wait(timeout=10) is not None
    assert lab.leftovers("demo") == []


def test_a_running_forward_to_the_same_target_is_kept(demo_forward):
    lab, log, forwarder = demo_forward
    forwards = [{"pid": forwarder.pid, "local_port": 8443, "target": "10.99.0.100:443", "log": str(log)}]
    state = {"machines": [{"name": "gpu-a", "ssh_port": 22101}], "forwards": forwards}
    lab.state_file("demo").write_text(json.dumps(state))
    assert lab.forward("demo", "gpu-a", 8443, "10.99.0.100:443") == forwarder.pid
    assert json.loads(lab.state_file("demo").read_text())["forwards"] == forwards
