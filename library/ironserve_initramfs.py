#!/usr/bin/python
"""Ansible module: one initramfs update per stage, made when a package asked for it or a file it holds changed."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ironserve_initramfs
short_description: Rebuild the newest kernel's initramfs once, when a package asked or a file it holds changed
description:
  - O(state=current) finds the initramfs that C(update-initramfs -u) refreshes (the newest kernel's, in
    O(boot_dir)) and rebuilds it with C(update-initramfs -u -k VERSION) when a package transaction run with the
    deferral recorded a request for it, or when a file in O(must_contain) was written after it; then it clears the
    requests. A host without any initramfs there is an error that says so.
  - O(state=deferral) writes a recorder named update-initramfs and an apt configuration that puts it first on
    dpkg's PATH (apt's C(DPkg::Path)). A package transaction run with the environment variable C(APT_CONFIG) set
    to the returned RV(apt_config) records the updates its packages ask for instead of making each (the NVIDIA
    driver's transaction made three, the storage tools' one more before the role's own, each about a minute under
    TCG); other calls (C(-c), C(-d), C(-k)) go to the real program. Nothing outside that transaction sees the
    recorder.
version_added: "0.1.0"
author: ironserve
options:
  state:
    description: V(current) to make the initramfs current, V(deferral) to write the recorder.
    type: str
    choices: [current, deferral]
    default: current
  must_contain:
    description: Files the initramfs must hold as they are now (modprobe configuration, mdadm.conf).
    type: list
    elements: path
    default: []
  boot_dir:
    description: Where the kernels' initramfs images are.
    type: path
    default: /boot
  deferral_dir:
    description: Where the recorder (C(bin/update-initramfs)) and its apt configuration (C(apt.conf)) are written.
    type: path
    default: /usr/local/lib/ironserve/initramfs-deferral
  requests_file:
    description: Where the recorder writes the packages that asked for an update; it survives a failed run.
    type: path
    default: /var/lib/ironserve/initramfs-requests
attributes:
  check_mode:
    support: full
    description: Reports whether a rebuild is due, rebuilding nothing.
"""

EXAMPLES = r"""
- name: Defer the initramfs updates of the driver's packages to the end of the stage
  ironserve_initramfs:
    state: deferral
  register: _deferral

- name: Install the driver
  ansible.builtin.apt:
    name: nvidia-open-kernel-dkms
  environment:
    APT_CONFIG: "{{ _deferral.apt_config }}"
  notify: Rebuild the initramfs

# The handler
- name: Rebuild the initramfs
  ironserve_initramfs:
    must_contain:
      - /etc/modprobe.d/ironserve-blacklist-nouveau.conf
"""

RETURN = r"""
apt_config:
  description: The apt configuration to give a package transaction as C(APT_CONFIG).
  returned: state=deferral
  type: str
initrd:
  description: The initramfs compared (and rebuilt when changed).
  returned: state=current
  type: str
kernel:
  description: Its kernel version.
  returned: state=current
  type: str
stale:
  description: The files of must_contain that were newer than it.
  returned: state=current
  type: list
  elements: str
requested_by:
  description: >-
    The packages whose recorded request for an update this call made (state=current), or that are recorded and
    not made yet (state=deferral: left by a run that stopped before its rebuild).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ironserve_target.initramfs import (
    DEFERRAL_DIR,
    REQUESTS_FILE,
    deferral_files,
    newest_initrd,
    requested_by,
    stale_inputs,
)


def _write_deferral(module: AnsibleModule) -> None:
    files = deferral_files(module.params["deferral_dir"], module.params["requests_file"])
    changed = False
    for path, (content, mode) in files.items():
        try:
            with open(path, encoding="utf-8") as current:
                same = current.read() == content and (os.stat(path).st_mode & 0o7777) == mode
        except FileNotFoundError:
            same = False
        if same:
            continue
        changed = True
        if not module.check_mode:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            partial = path + ".ironserve-new"
            with open(partial, "w", encoding="utf-8") as new:
                new.write(content)
            os.chmod(partial, mode)
            os.replace(partial, path)
    apt_config = next(path for path in files if path.endswith("apt.conf"))
    # Left by a run that stopped between a deferred install and its rebuild: the caller notifies the rebuild for them.
    module.exit_json(changed=changed, apt_config=apt_config, requested_by=requested_by(module.params["requests_file"]))


def _make_current(module: AnsibleModule) -> None:
    found = newest_initrd(module.params["boot_dir"])
    requests = requested_by(module.params["requests_file"])
    if found is None and not requests and not module.params["must_contain"]:
        # Nothing asked for an initramfs here; a host that boots without one is not this call's concern.
        module.exit_json(changed=False, initrd="", kernel="", stale=[], requested_by=[])
    if found is None:
        module.fail_json(
            msg=f"No initramfs in {module.params['boot_dir']} (no /boot/initrd.img-VERSION): this host boots without "
            "one, or /boot is not mounted; mount /boot, or install initramfs-tools and the kernel's image"
        )
    kernel, initrd = found
    stale = stale_inputs(initrd, module.params["must_contain"])
    changed = bool(stale or requests)
    result = {"changed": changed, "initrd": initrd, "kernel": kernel, "stale": stale, "requested_by": requests}
    if changed and not module.check_mode:
        module.run_command(["update-initramfs", "-u", "-k", kernel], check_rc=True)
        if requests:
            os.remove(module.params["requests_file"])
    module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["current", "deferral"], "default": "current"},
            "must_contain": {"type": "list", "elements": "path", "default": []},
            "boot_dir": {"type": "path", "default": "/boot"},
            "deferral_dir": {"type": "path", "default": DEFERRAL_DIR},
            "requests_file": {"type": "path", "default": REQUESTS_FILE},
        },
        supports_check_mode=True,
    )
    if module.params["state"] == "deferral":
        _write_deferral(module)
    _make_current(module)


if __name__ == "__main__":
    main()
