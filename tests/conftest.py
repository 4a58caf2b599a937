"""Unit tests import the Ansible module_utils the way the modules do on a target."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "module_utils"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
