"""The front door's HAProxy and keepalived configuration as a two-host site gets it: the role's own templates, rendered
by Ansible on this machine (local connection, connects nowhere), then read for the settings the failover depends on."""

from __future__ import annotations

import pytest
from role_templates import REPO, nft_check_problem, render, render_nft_table

from ironserve import frontend

ROLE = REPO / "roles" / "service_frontend"
RECORDS = {
    "gpu01": {"url": "http://192.0.2.11:8000", "health": "http://192.0.2.11:8000/health", "serves_api": True},
    "gpu02": {"url": "http://192.0.2.12:8000", "health": "http://192.0.2.12:8000/health", "serves_api": True},
}

NAMES = ("haproxy.cfg", "keepalived.conf", "ironserve-split-brain.py")


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
        "inventory_hostname": "gpu01",
    }
    vars_files = (ROLE / "defaults/main.yml", ROLE / "vars/Debian.yml")
    render(folder, {ROLE / "templates" / f"{name}.j2": folder / name for name in NAMES}, variables, vars_files)
    firewall = render_nft_table(folder, ROLE / "templates" / "firewall.nft.j2", "frontend", variables, vars_files)
    return {**{name: (folder / name).read_text() for name in NAMES}, "firewall.nft": firewall}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_haproxy_serves_tls_on_the_floating_address_and_balances_every_engine(rendered):
    lines = _lines(rendered["haproxy.cfg"])
    assert "bind 192.0.2.100:443 ssl crt /etc/ironserve/frontend/server.pem alpn http/1.1" in lines
    assert "server gpu01 192.0.2.11:8000" in lines
    assert "server gpu02 192.0.2.12:8000" in lines
    assert "http-check send meth GET uri /health ver HTTP/1.1 hdr Host 192.0.2.100" in lines
    assert "default-server check inter 1000ms fall 2 rise 2" in lines
    assert "option srvtcpka" in lines
    assert "timeout connect 500ms" in lines


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


def test_the_firewall_refuses_only_the_front_doors_planes(rendered):
    lines = _lines(rendered["firewall.nft"])
    assert "table inet ironserve_frontend" in lines
    assert "delete table inet ironserve_frontend" in lines  # replaced as a whole, in one transaction
    assert "type filter hook input priority filter; policy accept;" in lines  # refusals only
    assert "elements = { 192.0.2.11, 192.0.2.12 }" in lines  # the front doors, allowed to the engine
    assert "elements = { 192.0.2.12 }" in lines  # the VRRP peer
    assert 'tcp dport 443 ip daddr != 192.0.2.100 counter drop comment "api-off-the-floating-address"' in lines
    assert 'tcp dport { 8000 } ip saddr != @front_doors counter drop comment "engine-from-elsewhere"' in lines
    assert 'ip protocol 112 ip saddr != @vrrp_peers counter drop comment "vrrp-from-elsewhere"' in lines
    assert "flush ruleset" not in rendered["firewall.nft"]  # a site's own tables stay
    assert not any(" 22 " in line or "ssh" in line for line in lines if not line.startswith("#"))


def test_the_firewall_is_valid_nftables(rendered, tmp_path):
    assert nft_check_problem(rendered["firewall.nft"], tmp_path) is None


def test_the_split_brain_check_asks_the_segment_for_the_floating_address(rendered):
    text = rendered["ironserve-split-brain.py"]
    compile(text, "ironserve-split-brain.py", "exec")
    assert 'ADDRESS = "192.0.2.100"' in text
    assert 'INTERFACE = "eno1"' in text
    assert '"arping", "-D"' in text
