"""The front door's rules (ironserve/frontend.py): VRRP timing and priorities, the floating address against the
host's subnets, refused settings each naming its variable, and the engines behind HAProxy."""

from __future__ import annotations

import pytest

from ironserve import frontend

FACTS = {
    "interfaces": ["lo", "eth0", "svc0"],
    "lo": {"ipv4": {"address": "127.0.0.1"}},
    "eth0": {"ipv4": {"address": "10.0.2.15"}},
    # A node that holds the floating address has it as a secondary: it must not count as the node's own.
    "svc0": {"ipv4": {"address": "10.97.0.11"}, "ipv4_secondaries": [{"address": "10.97.0.100"}]},
}
GOOD = {
    "service_frontend_address": "10.97.0.100/24",
    "service_frontend_interface": "",
    "service_frontend_failover": True,
    "service_frontend_vrrp_router_id": 51,
    "service_frontend_vrrp_advert_seconds": 0.5,
    "service_frontend_tls_certificate": "",
    "service_frontend_tls_key": "",
}
HOSTS = ["infer-a", "infer-b"]


def test_the_default_advert_loses_a_dead_master_within_3_seconds():
    # 3 adverts + (256 - 100) / 256 of one: the standby's wait after the master's last advert.
    assert frontend.takeover_seconds(0.5, 100) == pytest.approx(1.805, abs=0.001)
    assert frontend.takeover_seconds(1, 100) == pytest.approx(3.609, abs=0.001)  # v2's 1 s would not do


def test_priorities_put_the_primary_group_first_and_differ():
    assert frontend.priorities(["b", "a", "c"], ["a"]) == {"a": 150, "b": 99, "c": 98}
    assert len(set(frontend.priorities(["a", "b", "c"], []).values())) == 3


def test_the_floating_address_finds_the_nic_in_its_subnet_and_the_own_address_on_it():
    assert frontend.interface_in_subnet(FACTS, "10.97.0.100/24") == "svc0"
    assert frontend.interface_address(FACTS, "svc0", "10.97.0.100/24") == "10.97.0.11"
    assert frontend.interface_in_subnet(FACTS, "10.96.0.100/24") == ""
    assert frontend.problems(GOOD, HOSTS, FACTS) == []


@pytest.mark.parametrize(
    ("change", "hosts", "message"),
    [
        ({"service_frontend_address": "10.97.0.100"}, HOSTS, "service_frontend_address is '10.97.0.100'; give"),
        ({"service_frontend_address": "10.97.0.255/24"}, HOSTS, "its subnet's network or broadcast address"),
        ({"service_frontend_address": "10.96.0.100/24"}, HOSTS, "10.96.0.100/24 is outside every subnet"),
        ({"service_frontend_interface": "eth0"}, HOSTS, "service_frontend_interface eth0 has no address in 10.97"),
        ({"service_frontend_interface": "bond9"}, HOSTS, "service_frontend_interface bond9 is not an interface"),
        ({}, ["infer-a"], "service_frontend_failover is on, and group inference_servers has 1 host(s)"),
        ({"service_frontend_vrrp_router_id": 256}, HOSTS, "service_frontend_vrrp_router_id is 256; use 1 to 255"),
        ({"service_frontend_vrrp_advert_seconds": 0.005}, HOSTS, "service_frontend_vrrp_advert_seconds is 0.005"),
        ({"service_frontend_vrrp_advert_seconds": 50}, HOSTS, "use 0.01 to 40.95 in steps of 0.01"),
        ({"service_frontend_tls_certificate": "PEM"}, HOSTS, "service_frontend_tls_certificate is set and"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(change, hosts, message):
    found = frontend.problems({**GOOD, **change}, hosts, FACTS)
    assert len(found) == 1, found
    assert message in found[0]


def test_one_host_without_failover_is_allowed():
    assert frontend.problems({**GOOD, "service_frontend_failover": False}, ["infer-a"], FACTS) == []


def test_backends_are_the_ranks_that_serve_the_api_with_their_health_path():
    records = {
        "infer-a": {"url": "http://10.0.2.15:8000", "health": "http://10.0.2.15:8000/health", "serves_api": True},
        "infer-b": {"url": "http://10.0.2.16:8000", "health": "http://10.0.2.16:8000/health", "serves_api": False},
        "infer-c": {"url": "http://10.0.2.17:8001", "health": "http://10.0.2.17:8001/health", "serves_api": True},
    }
    result = frontend.backends(records)
    assert result["servers"] == [
        {"name": "infer-a", "host": "infer-a", "address": "10.0.2.15", "port": 8000},
        {"name": "infer-c", "host": "infer-c", "address": "10.0.2.17", "port": 8001},
    ]
    assert (result["health_path"], result["problems"]) == ("/health", [])


def test_backends_are_the_engines_scaling_left_serving_and_the_firewall_keeps_every_slot():
    """A host with three slots, two serving (its scale state): both are servers; the firewall covers all three
    ports so that scaling never changes it; a host without a state serves its first engine only."""
    slots = [
        {"slot": n, "url": f"http://10.0.2.15:{8000 + n}", "health": f"http://10.0.2.15:{8000 + n}/health"}
        for n in range(3)
    ]
    records = {
        "infer-a": {"url": "http://10.0.2.15:8000", "replica_slots": slots},
        "infer-b": {"url": "http://10.0.2.16:8000", "replica_slots": [{**slots[0], "url": "http://10.0.2.16:8000"}]},
    }
    result = frontend.backends(records, {"infer-a": {"replicas": 2}})
    assert [(s["name"], s["host"], s["port"]) for s in result["servers"]] == [
        ("infer-a", "infer-a", 8000),
        ("infer-a-engine1", "infer-a", 8001),
        ("infer-b", "infer-b", 8000),
    ]
    rules = frontend.firewall(result, "infer-a", [], "10.0.2.100/24", 443, False)
    assert rules["engine_ports"] == [8000, 8001, 8002]
    assert [s["name"] for s in frontend.backends(records)["servers"]] == ["infer-a", "infer-b"]


def test_backends_refuse_no_engine_and_mixed_health_paths():
    assert "run the inference stage before" in frontend.backends({})["problems"][0]
    mixed = {
        "a": {"url": "http://a:8000", "health": "http://a:8000/health"},
        "b": {"url": "http://b:8000", "health": "http://b:8000/v1/models"},
    }
    assert "different paths (/health, /v1/models)" in frontend.backends(mixed)["problems"][0]


def _certificate_and_key() -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "api.example.org")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, key_pem


def test_a_site_certificate_must_match_its_unencrypted_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    certificate, key = _certificate_and_key()
    assert frontend.tls_problems(certificate, key) == []
    _, other_key = _certificate_and_key()
    assert "does not match service_frontend_tls_key" in frontend.tls_problems(certificate, other_key)[0]
    encrypted = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
        .decode()
    )
    assert "not an unencrypted PEM private key" in frontend.tls_problems(certificate, encrypted)[0]
    assert "not a PEM certificate" in frontend.tls_problems("junk", key)[0]
    assert all(key not in message for message in frontend.tls_problems(certificate, other_key))


def test_a_router_id_heard_from_another_machine_names_the_variable_and_who():
    text = frontend.router_id_problem(
        {"source": "192.0.2.200", "router_id": 51, "priority": 100, "version": 3}, 51, "eno1"
    )
    assert text.startswith("service_frontend_vrrp_router_id 51 is already in use on eno1: 192.0.2.200 announces it")


def test_the_firewall_lets_every_front_door_reach_the_engine_and_only_peers_speak_vrrp():
    backends = frontend.backends(
        {
            "gpu01": {"url": "http://192.0.2.11:8000", "serves_api": True},
            "gpu02": {"url": "http://192.0.2.12:8001", "serves_api": True},
            "gpu03": {"url": "http://192.0.2.13:8000", "serves_api": False},  # rank 1 of an engine spanning nodes
        }
    )
    rules = frontend.firewall(backends, "gpu02", ["192.0.2.11", "192.0.2.13"], "192.0.2.100/24", 443, True)
    assert rules == {
        "floating_address": "192.0.2.100",
        "api_port": 443,
        "engine_ports": [8001],
        "front_doors": ["192.0.2.11", "192.0.2.12", "192.0.2.13"],  # gpu03's front door too
        "vrrp_peers": ["192.0.2.11", "192.0.2.13"],
    }
    assert frontend.firewall(backends, "gpu03", [], "192.0.2.100/24", 443, False)["engine_ports"] == []
    assert frontend.firewall(backends, "gpu01", ["192.0.2.12"], "192.0.2.100/24", 443, False)["vrrp_peers"] == []


def test_the_monitoring_servers_may_scrape_the_engines_too():
    """Prometheus on hosts of their own (group monitoring_servers) reaches each engine's /metrics through the
    firewall; an IPv6 address is left out (the engines' plane is IPv4)."""
    backends = frontend.backends(
        {
            "gpu01": {"url": "http://192.0.2.11:8000", "serves_api": True},
            "gpu02": {"url": "http://192.0.2.12:8000", "serves_api": True},
        }
    )
    rules = frontend.firewall(
        backends, "gpu01", ["192.0.2.12"], "192.0.2.100/24", 443, True, ["198.51.100.5", "2001:db8::5", ""]
    )
    assert rules["front_doors"] == ["192.0.2.11", "192.0.2.12", "198.51.100.5"]
