"""The whole probe: every section together on a host that has nothing, each unknown named instead of a failure."""

from __future__ import annotations

import pytest
from fakehost import FakeHost
from ironserve_target import probe


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path)


def test_an_empty_host_reports_unknowns_instead_of_failing(host):
    facts = probe.probe(host.system({}))
    assert facts["gpu"]["count"] == 0
    assert facts["host"]["secure_boot"] == "not_efi"
    assert facts["storage"]["disks"] == []
    assert facts["network"]["nics"] == []
