"""Unit tests import the target-side code as the controller does (``ironserve_target``, installed from
module_utils/ by pyproject.toml) and the tests' own helpers from this folder."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
