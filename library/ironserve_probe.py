#!/usr/bin/python
"""Ansible module: probe GPUs, disks, NICs and the host, read-only."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ironserve_probe
short_description: Probe a GPU server's accelerators, disks, NICs and host facts, changing nothing
description:
  - Reads sysfs, procfs, C(nvidia-smi -q -x) when the NVIDIA driver is loaded, C(blkid -p) for signatures and
    C(rocm-smi) when present, and returns one structured picture as C(hw) and, with I(fact), the C(ironserve_hw)
    fact.
  - Its shape (every key, its types, the disks' reason codes) is module_utils/ironserve_target/facts.py's schema.
  - GPU models, architectures and capabilities come from the GPU id rules (module_utils/ironserve_target/gpu_ids.py).
  - A missing tool never fails the module; what could not be determined is listed in C(ironserve_hw.unknown).
version_added: "0.1.0"
author: ironserve
options:
  sections:
    description: Which parts to probe.
    type: list
    elements: str
    choices: [gpus, disks, nics, host]
    default: [gpus, disks, nics, host]
  fact:
    description:
      - Also set the host's C(ironserve_hw) fact. The preflight stage's full probe sets it (the hardware report and
        every later play read it); a role that probes a section for its own decisions leaves it alone and registers
        the result (C(hw)) into its own variable, so what one role reads never depends on which ran before.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode returns the same facts.
notes:
  - Runs as root to read disk signatures and EFI variables; as another user those are reported unknown.
"""

EXAMPLES = r"""
- name: Probe the hardware
  ironserve_probe:

- name: Probe only disks, for a storage role's own plan
  ironserve_probe:
    sections: [disks]
    fact: false
  register: _tier_plan_probe

- name: Show the GPUs
  ansible.builtin.debug:
    msg: "{{ ironserve_hw.gpu.count }} x {{ ironserve_hw.gpu.models | join(', ') }}"
"""

RETURN = r"""
hw:
  description: The probe's picture of the host (the same as C(ironserve_hw) below).
  returned: always
  type: dict
ansible_facts:
  description: Facts, under C(ironserve_hw).
  returned: when I(fact) is true
  type: dict
  contains:
    ironserve_hw:
      description: The probe's picture of the host.
      type: dict
      contains:
        gpu:
          description: >-
            C(gpus) (per GPU - pci_address, numa_node, vendor, model, architecture, compute_capability, memory_gib,
            open_kernel_module, fp8, source, uuid, mig_mode, ecc_mode, driver_version, cuda_version), C(count),
            C(models), C(nvswitch), C(nvswitches), C(driver_loaded), C(driver_version), C(cuda_version).
          type: dict
          sample: {"count": 0, "gpus": [], "models": [], "nvswitch": false, "driver_loaded": false}
        storage:
          description: >-
            C(disks) (per disk - name, path, kind, rotational, size_bytes, model, serial, by_id, numa_node,
            partitions, signature, in_use, in_use_reasons and in_use_codes, the reasons as codes of
            module_utils/ironserve_target/facts.py) and C(free), the names of disks not in use.
          type: dict
        network:
          description: >-
            C(nics) (per physical NIC - name, mac, driver, pci_address, speed_mbps, mtu, link, numa_node,
            sriov_total_vfs, rdma) and C(rdma_devices) (device, port, netdev, state, link_layer, soft_roce).
          type: dict
        host:
          description: CPU, memory, NUMA, hugepages, kernel, OS, IOMMU, Secure Boot and virtualisation facts.
          type: dict
        gpu_nic_affinity:
          description: Per GPU and NIC, C(same_pcie_switch), C(same_numa_node), C(cross_numa) or C(unknown).
          type: list
          elements: dict
        unknown:
          description: What could not be determined, and why.
          type: list
          elements: str
probe_seconds:
  description: Wall time of the probe on the host.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule

# Every module of the package the probe runs, named absolutely: Mitogen (the bench's strategy, and a site's option)
# ships only the module_utils a module names that way, not those the package imports relatively
# (tests/test_packaging.py keeps this list whole; AnsiballZ follows both).
from ansible.module_utils.ironserve_target import facts, gpu_ids, nvidia_devices
from ansible.module_utils.ironserve_target.probe import SECTIONS, System, disks, gpus, host, nics, probe, system

SHIPPED = (facts, gpu_ids, nvidia_devices, disks, gpus, host, nics, system)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sections": {"type": "list", "elements": "str", "choices": list(SECTIONS), "default": list(SECTIONS)},
            "fact": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    started = time.monotonic()
    found = probe(System("/"), tuple(module.params["sections"]))
    published = {"ansible_facts": {"ironserve_hw": found}} if module.params["fact"] else {}
    module.exit_json(changed=False, hw=found, probe_seconds=round(time.monotonic() - started, 3), **published)


if __name__ == "__main__":
    main()
