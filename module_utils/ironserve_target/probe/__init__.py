"""Read-only hardware probe: GPUs, disks, NICs and the host, from sysfs, procfs and a few tools.

Runs on the target (stdlib only), one module per section. Every reader goes through ``System`` so tests can point it
at a recorded tree and recorded command outputs. A missing file or tool never raises: what could not be determined
is reported as None and named in ``unknown``.
"""

from __future__ import annotations

from .disks import probe_disks
from .gpus import probe_gpus
from .host import probe_host
from .nics import gpu_nic_affinity, probe_nics
from .system import System

__all__ = ["SECTIONS", "System", "probe", "probe_disks", "probe_gpus", "probe_host", "probe_nics"]

SECTIONS = ("gpus", "disks", "nics", "host")


def probe(system: System, sections=SECTIONS) -> dict:
    facts: dict = {}
    if "gpus" in sections:
        facts["gpu"] = probe_gpus(system)
    if "disks" in sections:
        facts["storage"] = probe_disks(system)
    if "nics" in sections:
        facts["network"] = probe_nics(system)
    if "host" in sections:
        facts["host"] = probe_host(system)
    if "gpu" in facts and "network" in facts:
        facts["gpu_nic_affinity"] = gpu_nic_affinity(system, facts["gpu"]["gpus"], facts["network"]["nics"])
    facts["unknown"] = list(system.unknown)
    return facts
