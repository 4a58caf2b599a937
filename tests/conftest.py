"""Unit tests import the target-side code as the controller does (``ironserve_target``, installed from
module_utils/ by pyproject.toml) and the tests' own helpers from this folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ironserve_target import facts, probe
from ironserve_target.probe import disks, gpus, host, nics

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Where each probe function's result sits in the facts.
_PROBES = ((probe, "probe", ""), (gpus, "probe_gpus", "gpu"), (disks, "probe_disks", "storage"))
_PROBES += ((nics, "probe_nics", "network"), (host, "probe_host", "host"))


@pytest.fixture(autouse=True)
def _every_probe_result_matches_the_facts_schema(monkeypatch):
    """The facts schema checked over every fixture: each probe result a unit test makes (every host shape, every
    recorded nvidia-smi and rocm-smi output) must match module_utils/ironserve_target/facts.py."""

    def checked(function, where):
        def call(*args, **kwargs):
            result = function(*args, **kwargs)
            assert facts.problems(result, where) == [], f"{function.__name__}'s result does not match the schema"
            return result

        return call

    for module, name, where in _PROBES:
        function = getattr(module, name)
        monkeypatch.setattr(module, name, checked(function, where))
        if module is not probe and hasattr(probe, name):
            monkeypatch.setattr(probe, name, checked(function, where))
