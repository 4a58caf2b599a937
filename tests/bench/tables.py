"""How a benchmark of make bench hands over its table: printed, and written where --out says."""

from __future__ import annotations

import sys
from pathlib import Path


def command(argv: list[str] | None) -> str:
    """The command line that produced the figures, for the table's heading."""
    return "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])])


def publish(text: str, out: str | None) -> None:
    print(text)
    if out:
        Path(out).write_text(text)
