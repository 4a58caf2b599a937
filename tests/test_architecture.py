"""docs/architecture.md stays true: every stage of site.yml and every role is named on it, and every file it names
exists."""

from __future__ import annotations

import re

from ironserve import paths, stages

PAGE = (paths.REPO_ROOT / "docs" / "architecture.md").read_text()
FILE = re.compile(r"`((?:ironserve|library|module_utils|filter_plugins|playbooks|roles|tests)/[A-Za-z0-9_./-]+)`")


def test_every_stage_and_role_is_on_the_page():
    table = PAGE.split("## Stages and roles", 1)[1].split("\n## ", 1)[0]
    for stage in stages.from_site(paths.REPO_ROOT / "site.yml"):
        assert f"\n| {stage.name} | `playbooks/{stage.name}.yml` |" in table, stage.name
    for role in (p.name for p in (paths.REPO_ROOT / "roles").iterdir() if p.is_dir()):
        assert f"`{role}`" in PAGE, role


def test_every_file_the_page_names_exists():
    named = set(FILE.findall(PAGE))
    assert len(named) > 15
    missing = sorted(name for name in named if not (paths.REPO_ROOT / name).exists())
    assert missing == []
