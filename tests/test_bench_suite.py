"""The bench runner's scheduling: which scenarios may run side by side."""

from __future__ import annotations

from bench import run_scenarios as bench
from bench.run_scenarios import Needs


def test_needs_are_read_from_the_scenario_platforms():
    assert bench.scenario_needs("network") == Needs(cpus=2, memory_mb=2048)
    assert bench.scenario_needs("probe") == Needs(cpus=3, memory_mb=1792)
    assert bench.scenario_needs("light") == Needs(cpus=0, memory_mb=1024)  # native processes, no vCPU


def test_a_scenario_starts_beside_another_only_while_cores_and_memory_allow():
    one = Needs(cpus=2, memory_mb=1536)
    assert bench.fits(Needs(cpus=64, memory_mb=10**6), [], cores=2, free_mb=1000, jobs=2)  # alone: always
    assert bench.fits(one, [one], cores=4, free_mb=20000, jobs=2)
    assert not bench.fits(one, [one], cores=2, free_mb=20000, jobs=2)  # TCG vCPUs beyond the cores
    assert bench.fits(Needs(cpus=0, memory_mb=1024), [one], cores=2, free_mb=20000, jobs=2)
    assert not bench.fits(one, [one], cores=4, free_mb=20000, jobs=1)
    assert not bench.fits(Needs(cpus=4, memory_mb=2048), [one], cores=2, free_mb=20000, jobs=2)
    assert not bench.fits(one, [one], cores=4, free_mb=bench.CONTROLLER_RESERVE_MB + 3000, jobs=2)


def test_the_first_waiting_scenario_that_fits_starts_next():
    needs = {"smoke": Needs(4, 2048), "probe": Needs(2, 1024), "storage": Needs(2, 1536)}
    running = [Needs(2, 1536)]
    assert bench.next_to_start(["smoke", "probe", "storage"], needs, running, 4, 20000, 2) == "probe"
    assert bench.next_to_start(["smoke"], needs, running, 4, 20000, 2) is None
    assert bench.next_to_start(["smoke"], needs, [], 2, 20000, 2) == "smoke"
