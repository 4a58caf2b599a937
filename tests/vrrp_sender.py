"""Another cluster on the segment: VRRPv3 adverts with a given router id to VRRP's multicast group, as keepalived
in its default (multicast) mode sends them, or to one address, as in unicast mode. Run as root inside a network
namespace: ``python3 vrrp_sender.py INTERFACE ROUTER_ID SECONDS [DESTINATION]``."""

from __future__ import annotations

import socket
import struct
import sys
import time

GROUP = "224.0.0.18"


def advert(router_id: int, priority: int = 100, address: str = "10.0.0.1") -> bytes:
    """A VRRPv3 advertisement (RFC 5798 section 5.1) for one IPv4 address, advert interval 1 s. The checksum is
    left 0: listeners that identify the sender do not need it."""
    return struct.pack("!BBBBHH", 0x31, router_id, priority, 1, 100, 0) + socket.inet_aton(address)


def send(interface: str, router_id: int, seconds: float, destination: str = GROUP) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    sent, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.sendto(advert(router_id), (destination, 0))
        sent += 1
        time.sleep(0.25)
    return sent


if __name__ == "__main__":
    name, rid, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    print(send(name, rid, duration, *(sys.argv[4:5] or [])))
