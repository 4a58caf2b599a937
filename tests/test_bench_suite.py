"""The bench runner's scheduling: which scenarios may run side by side."""

from __future__ import annotations

import os

from bench import run_scenarios as bench
from bench.run_scenarios import Needs
from lab_ansible import ad_hoc_with_bench_strategy


def test_needs_are_read_from_the_scenario_platforms():
    assert bench.scenario_needs("network") == Needs(cpus=2, memory_mb=2048, qemu_machines=2)
    assert bench.scenario_needs("probe") == Needs(cpus=3, memory_mb=1792, qemu_machines=2)
    assert bench.scenario_needs("storage") == Needs(cpus=2, memory_mb=1536, qemu_machines=1)
    assert bench.scenario_needs("gpu-stack") == Needs(cpus=2, memory_mb=2560, qemu_machines=1)  # and a light one
    assert bench.scenario_needs("light") == Needs(cpus=0, memory_mb=1024)  # native processes, no vCPU


def test_a_scenario_starts_beside_another_only_while_cores_and_memory_allow():
    one, two = Needs(cpus=2, memory_mb=1536, qemu_machines=1), Needs(cpus=2, memory_mb=2048, qemu_machines=2)
    light = Needs(cpus=0, memory_mb=1024)
    assert bench.fits(Needs(cpus=64, memory_mb=10**6), [], cores=2, free_mb=1000, jobs=2)  # alone: always
    assert bench.fits(one, [one], cores=2, free_mb=20000, jobs=2)  # a machine each: a core each
    assert not bench.fits(one, [two], cores=2, free_mb=20000, jobs=2)  # TCG machines beyond the cores
    assert not bench.fits(two, [one], cores=2, free_mb=20000, jobs=2)
    assert bench.fits(one, [two], cores=2, free_mb=20000, jobs=2, machines_per_core=2)
    assert not bench.fits(one, [two, two], cores=2, free_mb=20000, jobs=3, machines_per_core=2)
    assert bench.fits(light, [two], cores=2, free_mb=20000, jobs=2)
    assert not bench.fits(one, [one], cores=4, free_mb=20000, jobs=1)
    assert not bench.fits(one, [one], cores=4, free_mb=bench.CONTROLLER_RESERVE_MB + 3000, jobs=2)


def test_the_first_waiting_scenario_that_fits_starts_next():
    needs = {
        "inference-nodes": Needs(2, 2560, qemu_machines=2),
        "storage": Needs(2, 1536, qemu_machines=1),
        "probe": Needs(3, 1792, qemu_machines=2),
    }
    running = [Needs(2, 1536, qemu_machines=1)]
    assert bench.next_to_start(["inference-nodes", "storage", "probe"], needs, running, 2, 20000, 2) == "storage"
    assert bench.next_to_start(["inference-nodes", "probe"], needs, running, 2, 20000, 2) is None
    assert bench.next_to_start(["probe"], needs, [], 2, 20000, 2) == "probe"


def test_what_a_play_starts_under_the_bench_strategy_may_run_on_every_cpu():
    # Stock mitogen_linear on a 2-CPU machine pins every process a play starts to CPU 1 (the lab machines too).
    assert bench.strategy_env("mitogen")["ANSIBLE_STRATEGY"] == "mitogen_linear"
    code = "import os; print('CPUS=' + str(sorted(os.sched_getaffinity(0))))"
    result = ad_hoc_with_bench_strategy("-m", "ansible.builtin.command", "-a", f'python3 -c "{code}"')
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"CPUS={sorted(os.sched_getaffinity(0))}" in result.stdout, result.stdout[-2000:]


def test_a_failed_scenario_is_summed_up_in_a_few_short_lines():
    log = "\n".join(
        [
            "CRITICAL 'molecule/default/molecule.yml' glob failed.  Exiting.",
            "PLAY [Converge] ***",
            "FAILED - RETRYING: [dr-a]: Wait until ready (150 retries left).",
            'fatal: [dr-a]: FAILED! => {"changed": false, "msg": "' + "x" * 400 + '"}',
            "E   AssertionError: restore took too long",
            "E   assert 301.0 < 300",
            "FAILED molecule/dr/tests/test_dr.py::test_restore - AssertionError: restore took too long",
            "CRITICAL Ansible return code was 2",
        ]
        + ["ok"] * 50
    )
    digest = bench.failure_digest(log)
    assert digest[0].startswith("fatal: [dr-a]: FAILED!")
    assert len(digest[0]) == bench.DIGEST_WIDTH
    assert digest[1].startswith("FAILED molecule/dr/tests/test_dr.py::test_restore")
    assert digest[2] == "CRITICAL Ansible return code was 2"
    assert digest[3] == "E   AssertionError: restore took too long"
    assert len(digest) <= bench.DIGEST_LINES


def test_a_failed_scenario_with_no_recognised_line_shows_its_log_end():
    log = "\n".join(f"line {i}" for i in range(20))
    assert bench.failure_digest(log) == [f"line {i}" for i in range(14, 20)]


def test_a_scenario_runs_once_more_only_after_a_guest_kernel_panic(tmp_path):
    (tmp_path / "storage-a.log").write_text(
        "[  115.9] RIP: 0010:__set_next_task_fair\n[  115.9] Kernel panic - not syncing: Fatal exception in interrupt\n"
    )
    (tmp_path / "storage-b.log").write_text("[    2.1] systemd[1]: Reached target multi-user.target\n")
    assert bench.panicked_machines(tmp_path) == ["storage-a"]
    panicked = bench.Outcome("storage", 450, False, panicked=["storage-a"])
    assert bench.run_again_after_panic(panicked, set())
    # Once only, and never for a failed check or a pass.
    assert not bench.run_again_after_panic(panicked, {"storage"})
    assert not bench.run_again_after_panic(bench.Outcome("storage", 450, False), set())
    assert not bench.run_again_after_panic(bench.Outcome("storage", 450, True, panicked=["storage-a"]), set())


def test_the_table_reports_a_run_again_and_counts_only_the_last_run():
    first = bench.Outcome("storage", 456, False, panicked=["storage-a"], ran_again=True)
    rows = bench.table(
        [first, bench.Outcome("storage", 700, True), bench.Outcome("probe", 230, False)], 1400
    ).splitlines()
    assert rows[2] == "| storage | guest kernel panic on storage-a, ran again | 456 |"
    assert rows[3] == "| storage | passed | 700 |"
    assert rows[-1] == "| all, side by side | 1 of 2 | 1400 (scenarios together 1386) |"
