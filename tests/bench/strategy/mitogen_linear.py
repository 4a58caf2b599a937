"""Mitogen's ``mitogen_linear`` strategy without its CPU pinning: the bench's and the demo's strategy.

Mitogen pins Ansible's processes to CPUs (``ansible_mitogen.affinity``, a policy tuned on a 16-thread machine). On a
machine with two or three CPUs it reserves CPU 0 for its multiplexer and pins the top-level process, every worker
and every process they start to the one CPU left. Everything a play starts inherits that mask: the lab machines
booted by a scenario's create (QEMU and its vCPU threads, a light machine's whole systemd), the scenario's
services, every command a test runs. Measured on the 2-core bench machine: during a scenario CPU 0 stayed about 95%
idle while CPU 1 ran everything (``taskset -p`` on the QEMU process: mask 2). With the policy replaced by Mitogen's
own no-op one the kernel places processes on every CPU, as without Mitogen.
"""

from __future__ import annotations

import ansible_mitogen.affinity
import ansible_mitogen.loaders
import ansible_mitogen.strategy

# Looked up at each call (``ansible_mitogen.affinity.policy.assign_...``), and first called after this module loads.
ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    pass
