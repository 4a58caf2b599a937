#!/usr/bin/python
"""Ansible module: listen for VRRP adverts on a NIC, changing nothing."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ironserve_vrrp_listen
short_description: List the VRRP adverts a NIC hears for a few seconds
description:
  - Opens a packet socket on O(interface) with a kernel filter that keeps IP protocol 112 (so it hears adverts the
    host's firewall would drop), joins VRRP's multicast group 224.0.0.18 for the time, and returns every distinct
    advert (source, router id, priority, version) heard within O(seconds).
  - Unicast adverts between two other machines cross a switch without reaching this host and are not heard.
  - Reads only; runs the same in check mode.
version_added: "0.1.0"
author: ironserve
options:
  interface:
    description: The NIC to listen on.
    type: str
    required: true
  seconds:
    description: How long to listen; longer than the slowest advert interval expected on the segment.
    type: float
    default: 3.0
  router_id:
    description: When given, RV(conflicts) lists the adverts with this router id from none of O(own_addresses).
    type: int
  own_addresses:
    description: This cluster's own VRRP sources, which may use O(router_id).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
"""

EXAMPLES = r"""
- name: Hear who else speaks VRRP on the service segment
  ironserve_vrrp_listen:
    interface: eth1
    seconds: 3
    router_id: 51
    own_addresses: [192.0.2.11, 192.0.2.12]
  register: vrrp_heard
"""

RETURN = r"""
adverts:
  description: Every distinct advert heard (source, destination, router_id, priority, version).
  returned: always
  type: list
  elements: dict
conflicts:
  description: Adverts that use O(router_id) from another machine than O(own_addresses).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ironserve_target.vrrp import listen, same_router_id


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "interface": {"type": "str", "required": True},
            "seconds": {"type": "float", "default": 3.0},
            "router_id": {"type": "int"},
            "own_addresses": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        adverts = listen(params["interface"], params["seconds"])
    except OSError as error:
        module.fail_json(msg=f"cannot listen for VRRP on {params['interface']}: {error}")
    conflicts = (
        [] if params["router_id"] is None else same_router_id(adverts, params["router_id"], params["own_addresses"])
    )
    module.exit_json(changed=False, adverts=adverts, conflicts=conflicts)


if __name__ == "__main__":
    main()
