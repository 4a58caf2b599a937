"""The front door's settings refused at preflight, before any stage changes anything: the role's own preflight tasks
run by Ansible on this machine (local connection, connects nowhere), every problem listed, each naming its variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from role_templates import ANSIBLE, REPO

CERTIFICATE = "-----BEGIN CERTIFICATE-----\nnot-a-real-one\n-----END CERTIFICATE-----\n"
PLAY = """
- name: Preflight of the front door's settings
  hosts: inference_servers
  connection: local
  gather_facts: false
  tasks:
    - name: The service_frontend role's own preflight
      ansible.builtin.include_role:
        name: service_frontend
        tasks_from: preflight
"""


def _preflight(tmp_path: Path, variables: dict) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "hosts.yml").write_text(
        json.dumps({"inference_servers": {"hosts": {"localhost": {"ansible_python_interpreter": sys.executable}}}})
    )
    return subprocess.run(
        [ANSIBLE, "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml"), "-e", json.dumps(variables)],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_problem_is_listed_with_its_variable(tmp_path):
    result = _preflight(
        tmp_path,
        {
            "service_frontend_address": "192.0.2.100",
            "service_frontend_vrrp_router_id": 300,
            "service_frontend_tls_certificate": CERTIFICATE,
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    for expected in (
        "service_frontend on localhost:",
        "service_frontend_address is '192.0.2.100'; give the floating service address with its prefix",
        "service_frontend_failover is on, and group inference_servers has 1 host(s): failover needs two or more",
        "service_frontend_vrrp_router_id is 300; use 1 to 255",
        "service_frontend_tls_certificate is set and service_frontend_tls_key is not",
    ):
        assert expected in output, expected
    assert "not-a-real-one" not in output  # the certificate's check runs with no_log


def test_a_single_host_without_failover_passes_before_the_networks_are_up(tmp_path):
    # The address's subnet against the host's interfaces is the frontend stage's check, once the networks exist.
    result = _preflight(tmp_path, {"service_frontend_address": "192.0.2.100/24", "service_frontend_failover": False})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
