"""The front door's settings refused at preflight, before any stage changes anything: the role's own preflight tasks
run by Ansible on this machine (local connection, connects nowhere), every problem listed, each naming its variable."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC
from pathlib import Path

from role_templates import run_playbook

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


def _preflight(tmp_path: Path, variables: dict, *options: str) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "hosts.yml").write_text(
        json.dumps({"inference_servers": {"hosts": {"localhost": {"ansible_python_interpreter": sys.executable}}}})
    )
    return run_playbook(tmp_path / "play.yml", str(tmp_path / "hosts.yml"), variables, *options)


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


def test_a_single_host_without_failover_passes_before_the_networks_are_up(tmp_path):
    # The address's subnet against the host's interfaces is the frontend stage's check, once the networks exist.
    result = _preflight(tmp_path, {"service_frontend_address": "192.0.2.100/24", "service_frontend_failover": False})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def _certificate_and_other_key() -> tuple[str, str]:
    from datetime import datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ironserve-test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    other_pem = other.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return certificate.public_bytes(pem).decode(), other_pem.decode()


def test_a_certificate_that_does_not_match_its_key_is_refused_and_neither_is_logged(tmp_path):
    certificate, key = _certificate_and_other_key()
    result = _preflight(
        tmp_path,
        {
            "service_frontend_address": "192.0.2.100/24",
            "service_frontend_failover": False,
            "service_frontend_tls_certificate": certificate,
            "service_frontend_tls_key": key,
        },
        "-vv",
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "service_frontend_tls_certificate does not match service_frontend_tls_key" in output
    for pem in (certificate, key):
        assert pem.splitlines()[1] not in output  # with -vv too: the check runs with no_log
