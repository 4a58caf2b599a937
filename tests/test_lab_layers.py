"""Machine layers: keyed by what shaped them, so a changed role rebuilds exactly the layers that contain it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironserve.lab import layers
from ironserve.lab.layers import Layer
from ironserve.lab.spec import SpecError


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def repo(tmp_path):
    """Three stages: one applies role a; one applies b, which includes c; one applies d (a meta dependency on a)."""
    _write(tmp_path / "playbooks/one.yml", "- hosts: all\n  roles:\n    - role: a\n")
    _write(tmp_path / "playbooks/two.yml", "- hosts: all\n  roles: [b]\n")
    _write(
        tmp_path / "playbooks/three.yml",
        "- hosts: all\n  tasks:\n    - ansible.builtin.import_role:\n        name: d\n",
    )
    for role in "abcd":
        _write(tmp_path / f"roles/{role}/defaults/main.yml", f"{role}_x: 1\n")
        _write(tmp_path / f"roles/{role}/README.md", f"# {role}\n")
    _write(
        tmp_path / "roles/b/tasks/main.yml",
        "- name: Use c\n  ansible.builtin.include_role:\n    name: c\n",
    )
    _write(tmp_path / "roles/d/meta/main.yml", "dependencies:\n  - role: a\n")
    _write(tmp_path / "library/probe.py", "print(1)\n")
    return tmp_path


LAYERS = {
    "first": Layer("first", ("one",)),
    "on-first": Layer("on-first", ("two",), parent="first"),
    "second": Layer("second", ("two",)),
    "third": Layer("third", ("three",)),
    # One role of stage two, on its own, over first: b and what b includes (c), not stage two's playbook.
    "role-b": Layer("role-b", (), parent="first", roles=("b",)),
}


def _keys(repo: Path) -> dict[str, str]:
    return layers.keys(LAYERS, base_key="image-1", bundle_identity="bundle-1", repo=repo)


def test_the_roles_of_a_stage_include_included_roles_and_dependencies(repo):
    assert layers.stage_roles(["one"], repo) == ["a"]
    assert layers.stage_roles(["two"], repo) == ["b", "c"]
    assert layers.stage_roles(["three"], repo) == ["a", "d"]


@pytest.mark.parametrize(
    ("changed", "rebuilt"),
    [
        ("roles/c/defaults/main.yml", {"on-first", "second", "role-b"}),  # c is included by b
        ("roles/a/defaults/main.yml", {"first", "on-first", "third", "role-b"}),  # a parent's; third's dependency
        ("roles/d/defaults/main.yml", {"third"}),
        ("playbooks/two.yml", {"on-first", "second"}),  # role-b applies b without the stage's playbook
        ("library/probe.py", set(LAYERS)),  # shared code shapes every stage
        ("roles/b/README.md", set()),  # documentation shapes nothing
    ],
)
def test_a_changed_file_rebuilds_exactly_the_layers_that_contain_it(repo, changed, rebuilt):
    before = _keys(repo)
    path = repo / changed
    path.write_text(path.read_text() + "# changed\n")
    after = _keys(repo)
    assert {name for name in LAYERS if before[name] != after[name]} == rebuilt


def test_the_parent_the_bundle_and_the_variables_are_part_of_the_key(repo):
    base = _keys(repo)
    assert layers.keys(LAYERS, "image-2", "bundle-1", repo) != base
    assert layers.keys(LAYERS, "image-1", "bundle-2", repo)["first"] != base["first"]
    with_vars = {**LAYERS, "first": Layer("first", ("one",), variables={"a_x": 2})}
    assert layers.keys(with_vars, "image-1", "bundle-1", repo)["first"] != base["first"]


def test_a_layer_of_roles_holds_them_and_its_parents(repo):
    assert layers.applied_roles(LAYERS["role-b"], repo) == ["b", "c"]
    assert layers.contained_roles("role-b", LAYERS, repo) == ["a", "b", "c"]
    # The same role set by a stage or by name is a different recipe: a different disk.
    as_stage = {**LAYERS, "role-b": Layer("role-b", ("two",), parent="first")}
    assert layers.keys(as_stage, "image-1", "bundle-1", repo)["role-b"] != _keys(repo)["role-b"]
    with pytest.raises(SpecError, match=r"layer role-b: role 'nope' has no folder"):
        layers.applied_roles(Layer("role-b", (), roles=("nope",)), repo)


def test_declarations_are_checked(tmp_path):
    bad = tmp_path / "layers.yml"
    bad.write_text("layers:\n  x:\n    stages: []\n")
    with pytest.raises(SpecError, match=r"layer x .* 'stages' or 'roles' must be a non-empty list"):
        layers.declared(bad)
    bad.write_text("layers:\n  x:\n    roles: role_a\n")
    with pytest.raises(SpecError, match=r"layer x .* 'stages' or 'roles' must be a non-empty list"):
        layers.declared(bad)
    bad.write_text("layers:\n  x:\n    roles: [role_a]\n")
    assert layers.declared(bad)["x"].roles == ("role_a",)
    bad.write_text("layers:\n  x:\n    stages: [base]\n    parent: nothing\n")
    with pytest.raises(SpecError, match="parent 'nothing' is not declared"):
        layers.declared(bad)
    with pytest.raises(SpecError, match=r"layer 'nope' is not declared .* declared layers: base"):
        layers.lookup("nope", layers.declared())


def test_the_bench_declares_the_layers_its_scenarios_use():
    declared = layers.declared()
    used = {
        platform.get("layer")
        for scenario in layers.paths.REPO_ROOT.glob("molecule/*/molecule.yml")
        for platform in (layers.yaml.safe_load(scenario.read_text()).get("platforms") or [])
    } - {None}
    assert used <= set(declared), used - set(declared)
    assert layers.stage_roles(declared["base"].stages) == ["host_baseline", "package_source"]
    assert layers.contained_roles("container", declared) == ["container_runtime", "host_baseline", "package_source"]


def test_prune_removes_stale_and_least_recently_used_layers(tmp_path, monkeypatch):
    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    parent = tmp_path / "parent.qcow2"
    parent.write_bytes(b"p")
    for name, key, size in (("base", "k1", 10), ("base", "old", 10), ("gpu", "k2", 50), ("net", "k3", 50)):
        folder = tmp_path / "layers" / f"{name}-{key}"
        folder.mkdir(parents=True)
        (folder / "disk.qcow2").write_bytes(b"x" * size)  # manifests add about 80 bytes each
        (folder / "manifest.json").write_text(f'{{"backing": "{parent}"}}')
    (tmp_path / "layers" / "net-k3.building").mkdir()
    layers.image_for("gpu", "k2").manifest.touch()  # most recently used of the big ones: kept
    removed = layers.prune({"base": "k1", "gpu": "k2", "net": "k3"}, cap_bytes=10**6, log=lambda _m: None)
    names = sorted(p.name for p in removed)
    assert names == ["base-old", "net-k3.building"]
    removed = layers.prune({"base": "k1", "gpu": "k2", "net": "k3"}, cap_bytes=300, log=lambda _m: None)
    assert [p.name for p in removed] == ["base-k1"]
    assert sorted(p.name for p in (tmp_path / "layers").iterdir()) == ["gpu-k2", "net-k3"]


def test_a_builder_that_never_boots_is_taken_down(tmp_path, monkeypatch):
    from ironserve.lab import lab, vm

    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    downs = []

    def never_answers(spec, *args, **kwargs):
        raise vm.VmError("layer-base: no SSH on 127.0.0.1:2222 after 420 s")

    monkeypatch.setattr(lab, "up", never_answers)
    monkeypatch.setattr(lab, "down", lambda name, log=None: downs.append(name))
    image = layers.image_for("base", "0123456789abcdef")
    with pytest.raises(vm.VmError):
        layers._build(Layer(name="base", stages=("base",)), "0123456789abcdef", image, tmp_path / "disk", None, print)
    assert downs == ["layer-base"]
    assert not image.folder.exists()


def test_a_layer_is_found_by_its_content_key_whatever_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv("IRONSERVE_HOME", str(tmp_path))
    parent = tmp_path / "parent.qcow2"
    parent.write_bytes(b"p")
    folder = layers.image_for("base", "abc123").folder
    folder.mkdir(parents=True)
    (folder / "disk.qcow2").write_bytes(b"x")
    (folder / "manifest.json").write_text(f'{{"backing": "{parent}"}}')
    assert layers.find_by_key("abc123").folder == folder
    assert layers.find_by_key("abc12") is None
    parent.unlink()  # a layer whose backing is gone is not usable
    assert layers.find_by_key("abc123") is None


def test_the_playbook_of_a_layers_roles_is_one_ansible_accepts(tmp_path):
    import subprocess

    from ironserve import paths

    layer = layers.declared()["container"]
    playbook = layers._roles_playbook(layer, tmp_path)
    checked = subprocess.run(
        [paths.tool("ansible-playbook"), "--syntax-check", "-i", "localhost,", str(playbook)],
        cwd=paths.REPO_ROOT,
        env=paths.ansible_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    [play] = layers.yaml.safe_load(playbook.read_text())
    assert [role["role"] for role in play["roles"]] == ["container_runtime"]
    assert play["become"] is True
    assert play["gather_facts"] is True
