"""The lab's data segment: an isolated Linux bridge with one tap per machine.

The bridge has no uplink and no address on this machine (IPv6 disabled on it and on every tap), so the
machines reach each other and nothing else. Measured on these hosts: a bridge carries 8900-byte datagrams
and 802.1Q-tagged frames between TCG guests, where a VDE switch dropped jumbo frames.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from ironserve import paths


class SegmentError(RuntimeError):
    """The data segment could not be set up or removed."""


def interface_names(lab: str, machine_names: list[str]) -> tuple[str, dict[str, str]]:
    """Short, per-lab interface names (Linux allows 15 characters) that do not clash between labs, nor
    between two state folders (a developer's checkout and CI on one machine) using the same lab name."""
    tag = hashlib.sha256(f"{paths.labs_dir()}/{lab}".encode()).hexdigest()[:6]
    taps = {name: f"isv{tag}t{index}" for index, name in enumerate(machine_names)}
    return f"isv{tag}br", taps


def mgmt_peer_name(data_peer: str) -> str:
    """The host end of a light machine's management veth, beside its data NIC's ("...t0" -> "...m0")."""
    head, _, index = data_peer.rpartition("t")
    return f"{head}m{index}"


# br: the bridge; tN: a QEMU tap or a light machine's data veth; mN: a light machine's management veth; a
# trailing i: the machine's end of a veth, left on this side only while it starts.
_LAB_INTERFACE = re.compile(r"^isv[0-9a-f]{6}(br|[tm][0-9]+i?)$")


def is_lab_interface(name: str) -> bool:
    return bool(_LAB_INTERFACE.match(name))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SegmentError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def exists(interface: str) -> bool:
    return Path("/sys/class/net", interface).exists()


def _no_host_address(interface: str) -> None:
    knob = Path("/proc/sys/net/ipv6/conf", interface, "disable_ipv6")
    if knob.exists():
        knob.write_text("1\n")


def create(bridge: str, taps: list[str], mtu: int) -> None:
    if not exists(bridge):
        _ip("link", "add", bridge, "type", "bridge", "stp_state", "0")
    _no_host_address(bridge)
    # Bridged frames must not pass through this machine's firewall rules (a FORWARD drop would cut the segment).
    _ip("link", "set", bridge, "type", "bridge", "nf_call_iptables", "0", "nf_call_ip6tables", "0", check=False)
    _ip("link", "set", bridge, "mtu", str(mtu))
    for tap in taps:
        if not exists(tap):
            _ip("tuntap", "add", "dev", tap, "mode", "tap")
        _no_host_address(tap)
        _ip("link", "set", tap, "mtu", str(mtu), "master", bridge, "up")
    _ip("link", "set", bridge, "up")


def remove(bridge: str, taps: list[str]) -> None:
    for interface in [*taps, bridge]:
        if exists(interface):
            _ip("link", "del", interface)
