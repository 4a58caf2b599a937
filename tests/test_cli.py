"""The ironserve command: bad input is refused before anything happens, with exit code 2."""

from __future__ import annotations

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
