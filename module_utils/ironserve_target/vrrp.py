"""VRRP adverts heard on a segment: who else speaks VRRP there, with which router id.

Two VRRP instances with one router id on one segment fight over each other's adverts (and, in multicast mode, over
the same virtual MAC): the front door's own keepalived would go on announcing while another cluster's master does
the same. Listening before configuring is the only way to see them: nothing in an inventory knows the segment's
other clusters. Stdlib only: it runs on the target.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import time

VRRP_PROTOCOL = 112
VRRP_GROUP = "224.0.0.18"  # where VRRP speaks when not configured for unicast (RFC 5798 section 5.1.1.2)
ADVERTISEMENT = 1


def parse_advert(packet: bytes) -> dict | None:
    """An IPv4 packet with its header (as a raw socket receives it) read as a VRRP advert, or None."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header = (packet[0] & 0x0F) * 4
    if packet[9] != VRRP_PROTOCOL or len(packet) < header + 8:
        return None
    vrrp = packet[header:]
    version, kind = vrrp[0] >> 4, vrrp[0] & 0x0F
    if version not in (2, 3) or kind != ADVERTISEMENT:
        return None
    return {
        "source": socket.inet_ntoa(packet[12:16]),
        "destination": socket.inet_ntoa(packet[16:20]),
        "router_id": vrrp[1],
        "priority": vrrp[2],
        "version": version,
    }


# Classic BPF run on each IPv4 packet (a SOCK_DGRAM packet socket's filter sees it from the IP header): keep
# protocol 112, drop the rest in the kernel, so a busy segment costs this process nothing.
_VRRP_ONLY = ((0x30, 0, 0, 9), (0x15, 0, 1, VRRP_PROTOCOL), (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0))
_SO_ATTACH_FILTER = 26
_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4


def _attach_vrrp_filter(sock: socket.socket) -> ctypes.Array:
    program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in _VRRP_ONLY))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, struct.pack("HL", len(_VRRP_ONLY), ctypes.addressof(program)))
    return program


def listen(interface: str, seconds: float) -> list[dict]:
    """Every distinct (source, router id) advert that reaches ``interface`` within ``seconds``: multicast ones (the
    group is joined for the time) and unicast ones sent to this host. A packet socket, because it sees what
    arrives before the host's firewall does (the front door's own table drops VRRP from anyone but its peers)."""
    group = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP))
    try:
        index = socket.if_nametoindex(interface)
        membership = struct.pack(
            "4s4si",
            socket.inet_aton(VRRP_GROUP),
            socket.inet_aton("0.0.0.0"),  # noqa: S104 - no local address: the NIC is named by its index
            index,
        )
        group.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        _attach_vrrp_filter(sock)
        sock.bind((interface, _ETH_P_IP))  # Python converts to network order here, not in socket()
        heard: dict[tuple[str, int], dict] = {}
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                packet, where = sock.recvfrom(65535)
            except TimeoutError:
                break
            if where[0] != interface or where[2] == _PACKET_OUTGOING:
                continue  # another NIC's, before the bind took effect; or this host's own adverts
            advert = parse_advert(packet)
            if advert is not None:
                heard.setdefault((advert["source"], advert["router_id"]), advert)
        return sorted(heard.values(), key=lambda a: (a["router_id"], a["source"]))
    finally:
        sock.close()
        group.close()


def same_router_id(adverts: list[dict], router_id: int, own_addresses: list[str]) -> list[dict]:
    """The adverts that use ``router_id`` but come from none of ``own_addresses`` (this cluster's nodes)."""
    return [a for a in adverts if a["router_id"] == router_id and a["source"] not in own_addresses]
