"""The probe's host section: CPU, memory, NUMA, the OS and Secure Boot."""

from __future__ import annotations

import pytest
from fakehost import FakeHost
from ironserve_target.probe import host as host_section


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path)


def test_host_facts(host):
    cpuinfo = "".join(
        f"processor\t: {n}\nmodel name\t: AMD EPYC 9654 96-Core Processor\nphysical id\t: {n // 4}\n"
        f"core id\t\t: {(n % 4) // 2}\n\n"
        for n in range(8)
    )
    host.write("/proc/cpuinfo", cpuinfo)
    host.write(
        "/proc/meminfo", "MemTotal:       1583851520 kB\nHugePages_Total:    1024\nHugepagesize:       2048 kB\n"
    )
    host.write("/proc/sys/kernel/osrelease", "6.12.48+deb13-amd64\n")
    host.write(
        "/etc/os-release",
        'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie\n',
    )
    for node in range(2):
        host.mkdir(f"/sys/devices/system/node/node{node}")
    host.mkdir("/sys/kernel/iommu_groups/0")
    host.write(f"/sys/firmware/efi/efivars/SecureBoot-{host_section.EFI_GLOBAL}", b"\x06\x00\x00\x00\x01")
    facts = host_section.probe_host(host.system())
    assert (facts["sockets"], facts["cores"], facts["threads"]) == (2, 4, 8)
    assert facts["memory_mib"] == 1583851520 // 1024
    assert (facts["numa_nodes"], facts["hugepages_total"], facts["hugepage_size_kib"]) == (2, 1024, 2048)
    assert (facts["os_id"], facts["os_version"], facts["kernel"]) == ("debian", "13", "6.12.48+deb13-amd64")
    assert facts["iommu"] is True
    assert facts["secure_boot"] == "enabled"
