"""docs/bench.md's table of role owners stays true: every role has an owner whose converge applies it."""

from __future__ import annotations

import re

import yaml

from ironserve import paths
from ironserve.lab import layers

# Roles that change nothing, run by their owner's verify rather than its converge (so no idempotence pass).
RUN_IN_VERIFY = {"network_check"}
ROW = re.compile(r"^\| `(?P<role>[a-z_]+)` \| `(?P<scenario>[a-z-]+)`(?P<rest>.*)\|(?P<layers>[^|]*)\|$")


def _table() -> dict[str, tuple[str, set[str]]]:
    text = (paths.REPO_ROOT / "docs" / "bench.md").read_text()
    section = text.split("## Which scenario owns each role", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            named = {name.strip("` ") for name in match["layers"].split(",") if name.strip()}
            rows[match["role"]] = (match["scenario"], named)
    return rows


def _stages(playbook) -> list[str]:
    """The stage playbooks a scenario's playbook imports, following its own playbooks (the dr scenario's site.yml)."""
    stages = []
    for play in yaml.safe_load(playbook.read_text()):
        target = play.get("ansible.builtin.import_playbook")
        if not target:
            continue
        path = (playbook.parent / target).resolve()
        if path.parent == paths.REPO_ROOT / "playbooks":
            stages.append(path.stem)
        elif path.parent == playbook.parent:
            stages += _stages(path)
    return stages


def _converged_roles(scenario: str) -> set[str]:
    return set(layers.stage_roles(_stages(paths.REPO_ROOT / "molecule" / scenario / "converge.yml")))


def test_every_role_has_an_owner_that_converges_it():
    table = _table()
    roles = {p.name for p in (paths.REPO_ROOT / "roles").iterdir() if p.is_dir()}
    assert set(table) == roles
    for role, (scenario, _) in table.items():
        if role in RUN_IN_VERIFY:
            tests = "".join(p.read_text() for p in (paths.REPO_ROOT / "molecule" / scenario / "tests").glob("*.py"))
            assert f"playbooks/{role}.yml" in tests or f'"{role}"' in tests, f"{scenario}'s verify does not run {role}"
        else:
            assert role in _converged_roles(scenario), f"{scenario}'s converge does not apply {role}"


def test_no_owner_boots_from_a_layer_that_already_holds_its_role():
    declared = layers.declared()
    contained = {name: set(layers.contained_roles(name, declared)) for name in declared}
    for role, (scenario, named) in _table().items():
        assert named == {name for name, roles in contained.items() if role in roles}, role
        platforms = yaml.safe_load((paths.REPO_ROOT / "molecule" / scenario / "molecule.yml").read_text())["platforms"]
        for platform in platforms:
            assert role not in contained.get(platform.get("layer"), set()), f"{scenario} boots {role} from a layer"
