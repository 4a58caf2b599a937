"""The front door's rules: the floating service address, its VRRP timing and priorities, the engines behind HAProxy.

One home for them: the service_frontend role calls these through filters, and the tests call them directly.
Facts behind the numbers (keepalived 2.3.3's man page and source, HAProxy 3.0's configuration manual) are in
docs/notes/frontdoor-facts.md.
"""

from __future__ import annotations

import ipaddress
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from ironserve import network, scaling

# keepalived's master-down timer is this many advert intervals plus a skew (RFC 5798; keepalived's default).
DOWN_ADVERTS = 3
# VRRPv3 carries the advert interval in centiseconds, from 0.01 to 40.95 s; v2 only takes whole seconds.
ADVERT_RANGE = (Decimal("0.01"), Decimal("40.95"))
# The first host of the primary group wins the first election; a recovered node never takes the address back
# (nopreempt), so after a failover the priorities only decide elections where both start at once.
PRIMARY_PRIORITY = 150
STANDBY_PRIORITY = 100


def takeover_seconds(advert_seconds: float, priority: int) -> float:
    """How long a backup of ``priority`` waits, after the master's last advert, before it takes the address:
    3 adverts plus the VRRPv3 skew ((256 - priority) / 256 adverts)."""
    return round(DOWN_ADVERTS * advert_seconds + (256 - priority) * advert_seconds / 256, 3)


def priorities(hosts: list[str], primary_hosts: list[str]) -> dict[str, int]:
    """A distinct priority per host (keepalived's advice): the primary group first, each in inventory order."""
    ordered = [h for h in hosts if h in primary_hosts] + [h for h in hosts if h not in primary_hosts]
    result = {}
    for index, host in enumerate(ordered):
        base = PRIMARY_PRIORITY if host in primary_hosts else STANDBY_PRIORITY
        result[host] = base - index
    return result


def interface_address(facts: dict[str, Any], interface: str, address: str) -> str:
    """This host's own address on ``interface`` (Ansible's facts) in the floating address's subnet, not the floating
    address itself (a node holding it has it as a secondary): the VRRP unicast source. "" if none, or if ``address``
    is not an address with its prefix."""
    try:
        floating = ipaddress.ip_interface(address)
    except ValueError:
        return ""
    for candidate in network.ipv4_entries(facts, interface):
        own = candidate.get("address")
        if own and own != str(floating.ip) and ipaddress.ip_address(own) in floating.network:
            return own
    return ""


def interface_in_subnet(facts: dict[str, Any], address: str) -> str:
    """The interface with an address of its own in the floating address's subnet, or ""."""
    return next((name for name in facts.get("interfaces", []) if interface_address(facts, name, address)), "")


def problems(settings: dict[str, Any], hosts: list[str], facts: dict[str, Any] | None) -> list[str]:
    """Every reason the front door cannot be set up from these settings on this host, each naming its variable.

    ``settings``: the role's variables (service_frontend_*); ``hosts``: the inference hosts the front door balances
    and fails over across; ``facts``: this host's Ansible facts (its interfaces), or None before the networks are
    up (preflight), which leaves out what only the host's interfaces can tell."""
    found = []
    address = settings.get("service_frontend_address") or ""
    try:
        floating = ipaddress.ip_interface(address)
    except ValueError:
        floating = None
    if floating is None or floating.version != 4 or "/" not in address:
        found.append(
            f"service_frontend_address is {address!r}; give the floating service address with its prefix, "
            "for example 192.0.2.100/24"
        )
    elif floating.network.prefixlen < 31 and floating.ip in (
        floating.network.network_address,
        floating.network.broadcast_address,
    ):
        found.append(f"service_frontend_address {address} is its subnet's network or broadcast address")
    elif facts is None:
        pass
    elif settings.get("service_frontend_interface"):
        name = settings["service_frontend_interface"]
        if name not in facts.get("interfaces", []):
            found.append(f"service_frontend_interface {name} is not an interface of this host")
        elif not interface_address(facts, name, address):
            found.append(
                f"service_frontend_interface {name} has no address in {floating.network}, the subnet of "
                f"service_frontend_address {address}: the floating address must be in a subnet the host is on"
            )
    elif not interface_in_subnet(facts, address):
        found.append(
            f"service_frontend_address {address} is outside every subnet this host has an address in; give an "
            "address in the service network's subnet, or name the NIC in service_frontend_interface"
        )
    if settings.get("service_frontend_failover", True) and len(hosts) < 2:
        found.append(
            f"service_frontend_failover is on, and group inference_servers has {len(hosts)} host(s): failover needs "
            "two or more (add the standby to inference_servers, or set service_frontend_failover: false)"
        )
    router_id = settings.get("service_frontend_vrrp_router_id")
    if not isinstance(router_id, int) or not 1 <= router_id <= 255:
        found.append(f"service_frontend_vrrp_router_id is {router_id!r}; use 1 to 255, unique on the segment")
    try:
        advert = Decimal(str(settings.get("service_frontend_vrrp_advert_seconds")))
    except InvalidOperation:
        advert = None
    if advert is None or not ADVERT_RANGE[0] <= advert <= ADVERT_RANGE[1] or advert % Decimal("0.01"):
        found.append(
            f"service_frontend_vrrp_advert_seconds is {settings.get('service_frontend_vrrp_advert_seconds')!r}; "
            "use 0.01 to 40.95 in steps of 0.01 (VRRPv3)"
        )
    certificate = bool(settings.get("service_frontend_tls_certificate"))
    key = bool(settings.get("service_frontend_tls_key"))
    if certificate != key:
        given, missing = (
            ("service_frontend_tls_certificate", "service_frontend_tls_key")
            if certificate
            else ("service_frontend_tls_key", "service_frontend_tls_certificate")
        )
        found.append(f"{given} is set and {missing} is not: give both (vaulted), or neither for a generated site CA")
    return found


def tls_problems(certificate: str, key: str) -> list[str]:
    """Whether the site's certificate and key can serve: both PEM, the key unencrypted (HAProxy starts unattended),
    and the certificate's public key the key's. Runs on the controller (cryptography comes with ansible-core); the
    role calls it with no_log, and the messages carry no part of either."""
    if not (certificate and key):
        return []  # problems() names a missing half
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        public_of_certificate = x509.load_pem_x509_certificate(certificate.encode()).public_key()
    except ValueError:
        return ["service_frontend_tls_certificate is not a PEM certificate (-----BEGIN CERTIFICATE-----)"]
    try:
        public_of_key = serialization.load_pem_private_key(key.encode(), password=None).public_key()
    except (ValueError, TypeError):
        return [
            "service_frontend_tls_key is not an unencrypted PEM private key: HAProxy starts unattended and cannot "
            "ask for a passphrase (vault the key instead of encrypting it)"
        ]

    def spki(public) -> bytes:
        return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    if spki(public_of_certificate) != spki(public_of_key):
        return [
            "service_frontend_tls_certificate does not match service_frontend_tls_key: give the key the "
            "certificate was issued for"
        ]
    return []


def backends(records: dict[str, dict[str, Any]], states: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The engines the front door balances, from each inference host's record of what it serves
    (/etc/ironserve/inference/ready.json, written by the inference role) and its scale state (``states``, scale.json
    beside it: how many of its engines serve, ironserve.scaling): only ranks that serve the API (rank 0 of an engine
    spanning nodes). Returns the servers, the one health path they share and each host's engine ports (every slot's,
    serving or not: the firewall does not change when scaling does), or the problems."""
    servers, paths, found, addresses = [], set(), [], set()
    ports: dict[str, list[int]] = {}
    for host, record in records.items():
        # Every inference host runs a front door, and reaches the engines from its address in their plane: the
        # one its own record names (a rank that serves no API included).
        address = urlsplit(record["url"]).hostname or ""
        if ":" in address:
            found.append(
                f"{host}'s engine listens on {address}: the front door (its health checks and its firewall) takes "
                "IPv4 engine addresses; give inference_bind_address an IPv4 address"
            )
        addresses.add(address)
        if not record.get("serves_api", True):
            continue
        ports[host] = [urlsplit(slot["url"]).port or 80 for slot in scaling.record_slots(record)]
        for slot in scaling.serving(record, (states or {}).get(host)):
            url, health = urlsplit(slot["url"]), urlsplit(slot.get("health") or slot["url"])
            name = host if slot["slot"] == 0 else f"{host}-engine{slot['slot']}"
            servers.append({"name": name, "host": host, "address": url.hostname, "port": url.port or 80})
            paths.add(health.path or "/")
    if not servers:
        found.append("no inference host serves the API yet: run the inference stage before the frontend stage")
    if len(paths) > 1:
        found.append(
            f"the engines answer health checks on different paths ({', '.join(sorted(paths))}): one engine "
            "kind per front door"
        )
    return {
        "servers": servers,
        "health_path": min(paths) if paths else "/health",
        "front_doors": sorted(addresses),
        "engine_ports": ports,
        "problems": found,
    }


def router_id_problem(advert: dict[str, Any], router_id: int, interface: str) -> str:
    """The message for another machine heard announcing this cluster's VRRP router id on the segment."""
    return (
        f"service_frontend_vrrp_router_id {router_id} is already in use on {interface}: {advert['source']} announces "
        f"it (VRRP v{advert['version']}, priority {advert['priority']}); give this cluster a router id no other "
        "VRRP cluster on the segment uses"
    )


def firewall(
    backends: dict[str, Any],
    host: str,
    peers: list[str],
    address: str,
    port: int,
    failover: bool,
    scrapers: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """What the front door's nftables table refuses on ``host``: the API anywhere but on the floating address, this
    host's engine to anyone but the front doors (``backends["front_doors"]``) and the monitoring servers that scrape
    its /metrics (``scrapers``, their IPv4 addresses), VRRP from anyone but the peers; loopback is always let
    through."""
    own = backends.get("engine_ports", {}).get(host, [])
    allowed = set(backends.get("front_doors", []))
    allowed |= {a for a in scrapers if a and ":" not in a}  # the engines' plane is IPv4 (backends() refuses others)
    return {
        "floating_address": address.split("/")[0],
        "api_port": port,
        "engine_ports": sorted(own),
        "front_doors": sorted(allowed),
        "vrrp_peers": sorted(peers) if failover else [],
    }
