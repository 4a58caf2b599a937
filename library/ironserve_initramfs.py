#!/usr/bin/python
"""Ansible module: rebuild the initramfs only when it is older than the files it must contain."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ironserve_initramfs
short_description: Rebuild the newest kernel's initramfs when files it must contain are newer than it
description:
  - Finds the initramfs that C(update-initramfs -u) refreshes (the newest kernel's, in O(boot_dir)) and compares
    its age with the files in O(must_contain); rebuilds it with C(update-initramfs -u -k VERSION) only when one of
    them was written after it. A host without any initramfs there is an error that says so.
  - Package installs rebuild the initramfs through initramfs-tools' dpkg trigger; a role that writes its
    configuration first and notifies this module afterwards rebuilds once per run, not once per cause.
version_added: "0.1.0"
author: ironserve
options:
  must_contain:
    description: Files the initramfs must hold as they are now (modprobe configuration, mdadm.conf).
    type: list
    elements: path
    required: true
  boot_dir:
    description: Where the kernels' initramfs images are.
    type: path
    default: /boot
attributes:
  check_mode:
    support: full
    description: Reports whether a rebuild is due, rebuilding nothing.
"""

EXAMPLES = r"""
- name: Rebuild the initramfs
  ironserve_initramfs:
    must_contain:
      - /etc/modprobe.d/ironserve-blacklist-nouveau.conf
"""

RETURN = r"""
initrd:
  description: The initramfs compared (and rebuilt when changed).
  returned: always
  type: str
kernel:
  description: Its kernel version.
  returned: always
  type: str
stale:
  description: The files of must_contain that were newer than it.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ironserve_target.initramfs import newest_initrd, stale_inputs


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "must_contain": {"type": "list", "elements": "path", "required": True},
            "boot_dir": {"type": "path", "default": "/boot"},
        },
        supports_check_mode=True,
    )
    found = newest_initrd(module.params["boot_dir"])
    if found is None:
        module.fail_json(
            msg=f"No initramfs in {module.params['boot_dir']} (no /boot/initrd.img-VERSION): this host boots without "
            "one, or /boot is not mounted; mount /boot, or install initramfs-tools and the kernel's image"
        )
    kernel, initrd = found
    stale = stale_inputs(initrd, module.params["must_contain"])
    result = {"changed": bool(stale), "initrd": initrd, "kernel": kernel, "stale": stale}
    if stale and not module.check_mode:
        module.run_command(["update-initramfs", "-u", "-k", kernel], check_rc=True)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
