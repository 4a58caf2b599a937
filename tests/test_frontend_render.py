"""The front door's HAProxy and keepalived configuration as a two-host site gets it: the role's own templates, rendered
by Ansible on this machine (local connection, connects nowhere), then read for the settings the failover depends on."""

from __future__ import annotations

from pathlib import Path

import pytest
from role_templates import render

from ironserve import frontend

REPO = Path(__file__).resolve().parents[1]
ROLE = REPO / "roles" / "service_frontend"
RECORDS = {
    "gpu01": {"url": "http://192.0.2.11:8000", "health": "http://192.0.2.11:8000/health", "serves_api": True},
    "gpu02": {"url": "http://192.0.2.12:8000", "health": "http://192.0.2.12:8000/health", "serves_api": True},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("frontend")
    variables = {
        "service_frontend_address": "192.0.2.100/24",
        "_service_frontend_vip": "192.0.2.100",
        "_service_frontend_interface": "eno1",
        "_service_frontend_own_address": "192.0.2.11",
        "_service_frontend_peers": ["192.0.2.12"],
        "_service_frontend_priority": frontend.priorities(["gpu01", "gpu02"], ["gpu01"])["gpu01"],
        "_service_frontend_backends": frontend.backends(RECORDS),
    }
    render(
        folder,
        {ROLE / "templates" / f"{name}.j2": folder / name for name in ("haproxy.cfg", "keepalived.conf")},
        variables,
        vars_files=(ROLE / "defaults/main.yml", ROLE / "vars/Debian.yml"),
    )
    return {name: (folder / name).read_text() for name in ("haproxy.cfg", "keepalived.conf")}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_haproxy_serves_tls_on_the_floating_address_and_balances_every_engine(rendered):
    lines = _lines(rendered["haproxy.cfg"])
    assert "bind 192.0.2.100:443 ssl crt /etc/ironserve/frontend/server.pem alpn http/1.1" in lines
    assert "server gpu01 192.0.2.11:8000" in lines
    assert "server gpu02 192.0.2.12:8000" in lines
    assert "http-check send meth GET uri /health ver HTTP/1.1 hdr Host 192.0.2.100" in lines
    assert "default-server check inter 1000ms fall 2 rise 2" in lines


def test_haproxy_retries_only_what_got_no_answer_and_on_another_engine(rendered):
    lines = _lines(rendered["haproxy.cfg"])
    assert "retry-on conn-failure empty-response" in lines
    assert "option redispatch 1" in lines
    assert "tune.bufsize 65536" in lines
    assert not any(
        line.startswith(("http-request del-header", "http-request set-header Authorization")) for line in lines
    )


def test_keepalived_every_node_backup_nopreempt_vrrpv3_unicast(rendered):
    lines = _lines(rendered["keepalived.conf"])
    for expected in (
        "state BACKUP",
        "nopreempt",
        "version 3",
        "advert_int 0.5",
        "interface eno1",
        "priority 150",
        "unicast_src_ip 192.0.2.11",
        "check_unicast_src",
        "192.0.2.100/24 dev eno1",
        'notify "/usr/local/sbin/ironserve-vrrp-notify"',
        "enable_script_security",
    ):
        assert expected in lines, expected
    peers = lines[lines.index("unicast_peer {") + 1 : lines.index("}", lines.index("unicast_peer {"))]
    assert peers == ["192.0.2.12"]
    assert "state MASTER" not in lines  # nopreempt works only from BACKUP (keepalived.conf(5))
    assert "vrrp_strict" not in lines  # it forbids unicast peers
