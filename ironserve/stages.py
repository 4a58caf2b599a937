"""The stages, in order, as site.yml imports them: site.yml is the one list of stages.

A stage is named after its playbook (playbooks/base.yml is stage "base"). Selection errors are bad input
and name what exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


class StageError(ValueError):
    """A stage selection or a site.yml that cannot work; the message names what exists."""


@dataclass(frozen=True)
class Stage:
    name: str
    playbook: Path


def from_site(site: Path) -> list[Stage]:
    """The stages that ``site`` imports, in order."""
    try:
        plays = yaml.safe_load(site.read_text()) or []
    except OSError as exc:
        raise StageError(f"cannot read {site}: {exc.strerror}") from exc
    stages = []
    for play in plays:
        target = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if not target:
            raise StageError(f"{site}: every entry must import a stage playbook; '{play.get('name')}' does not")
        playbook = (site.parent / target).resolve()
        stages.append(Stage(name=playbook.stem, playbook=playbook))
    if not stages:
        raise StageError(f"{site} imports no stage playbook")
    return stages


def parse_names(text: str, option: str = "--stages") -> list[str]:
    """Stage names from a comma-separated option, spaces around them allowed. An empty list or an empty name is bad
    input, never "every stage": an unset variable in a pipeline must not mean full provisioning."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise StageError(f"{option} '{text}' names an empty stage: give stage names separated by commas, like base,gpu")
    return names


def select(stages: list[Stage], only: list[str] | None = None, start: str | None = None) -> list[Stage]:
    """``only`` keeps the named stages (in site order); ``start`` runs from that stage to the end."""
    names = [s.name for s in stages]
    if only and start:
        raise StageError("--stages and --from cannot be combined: name the stages, or where to start")
    for name in [*(only or []), *([start] if start else [])]:
        if name not in names:
            raise StageError(f"no stage named '{name}'; the stages are: {', '.join(names)}")
    if only:
        return [s for s in stages if s.name in only]
    if start:
        return stages[names.index(start) :]
    return list(stages)
