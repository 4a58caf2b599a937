"""The demo lab's inventory as Ansible resolves it for its inference hosts (templated, on this machine, connecting
nowhere): both serve an engine on their own data-segment address, behind a floating address the front door's rules
accept on that segment, with the engine image and weights from the bundle the machines install from."""

from __future__ import annotations

import ipaddress
import json

import yaml
from role_templates import REPO, run_playbook

from ironserve import frontend

PLAYBOOK = """
- name: Resolve the demo's serving variables
  hosts: inference_servers
  connection: local
  gather_facts: false
  tasks:
    - name: Write them
      ansible.builtin.copy:
        content: "{{ {'bind': inference_bind_address, 'data': hostvars[inventory_hostname] | ironserve_data_address,
                      'vip': service_frontend_address, 'image_archives': inference_image_archive_url,
                      'weights': inference_weights_source, 'bundle': package_source_bundle_url,
                      'engine': inference_engine, 'nodes': inference_nodes | default(1),
                      'hosts': groups['inference_servers'], 'primary': groups['inference_primary']} | to_json }}"
        dest: "{{ out }}/{{ inventory_hostname }}.json"
        mode: "0600"
"""


def _resolved(tmp_path) -> dict[str, dict]:
    playbook = tmp_path / "resolve.yml"
    playbook.write_text(PLAYBOOK)
    result = run_playbook(playbook, str(REPO / "inventories/lab"), {"out": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {path.stem: json.loads(path.read_text()) for path in tmp_path.glob("*.json")}


def test_the_demo_serves_through_a_front_door_on_its_data_segment(tmp_path):
    resolved = _resolved(tmp_path)
    assert sorted(resolved) == ["gpu-a", "gpu-b"]
    defaults = yaml.safe_load((REPO / "roles/service_frontend/defaults/main.yml").read_text())
    vip = resolved["gpu-a"]["vip"]
    binds = set()
    for host, found in resolved.items():
        # Each engine on the host's own data-plane address: the management NICs share no segment in the lab.
        assert found["bind"] == found["data"].split("/")[0], host
        binds.add(found["bind"])
        assert found["vip"] == vip
        assert found["engine"] == "custom", host
        assert str(found["nodes"]) == "1", host  # an engine per host: each a hot standby of the other
        assert found["image_archives"] == found["bundle"] + "images/"
        assert found["weights"].startswith(found["bundle"])
        facts = {"interfaces": ["data0"], "data0": {"ipv4": {"address": found["bind"]}}}
        settings = {key: value for key, value in defaults.items() if key.startswith("service_frontend_")}
        assert frontend.problems({**settings, "service_frontend_address": vip}, found["hosts"], facts) == [], host
    assert len(binds) == 2
    assert ipaddress.ip_interface(vip).ip not in {ipaddress.ip_address(b) for b in binds}
    assert resolved["gpu-a"]["primary"] == ["gpu-a"]
