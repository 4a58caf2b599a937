"""The monitoring role's rule files as Prometheus reads them, for promtool: the recording rules and the alerts at the
role's defaults (ironserve.monitoring), written into a folder; without annotations where a test compares alert labels
only (their templates are checked by `promtool check rules` and on the bench)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ironserve import monitoring

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((REPO / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
FILES = ["ironserve-recording.yml", "ironserve-alerts.yml"]


def write_rules(folder: Path, annotations: bool = True) -> None:
    alerts = monitoring.alert_rules(DEFAULTS)
    if not annotations:
        for group in alerts["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations")
    (folder / FILES[0]).write_text(yaml.safe_dump(monitoring.recording_rules(), sort_keys=False))
    (folder / FILES[1]).write_text(yaml.safe_dump(alerts, sort_keys=False))
