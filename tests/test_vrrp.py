"""The VRRP listener the front door runs before configuring keepalived: adverts parsed, and heard for real across
two network namespaces this test makes (root only)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from ironserve_target import vrrp
from vrrp_sender import advert

TESTS = Path(__file__).parent
MODULE_UTILS = TESTS.parent / "module_utils"


def _ipv4(source: str, destination: str, payload: bytes, protocol: int = 112) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0,
        0,
        255,
        protocol,
        0,
        socket.inet_aton(source),
        socket.inet_aton(destination),
    )
    return header + payload


def test_an_advert_is_read_with_its_source_and_router_id():
    packet = _ipv4("10.96.7.2", "224.0.0.18", advert(51, priority=150))
    assert vrrp.parse_advert(packet) == {
        "source": "10.96.7.2",
        "destination": "224.0.0.18",
        "router_id": 51,
        "priority": 150,
        "version": 3,
    }


def test_what_is_not_a_vrrp_advert_is_ignored():
    assert vrrp.parse_advert(_ipv4("10.96.7.2", "10.96.7.1", advert(51), protocol=6)) is None
    assert vrrp.parse_advert(_ipv4("10.96.7.2", "10.96.7.1", b"\x32" + advert(51)[1:])) is None  # type 2
    assert vrrp.parse_advert(b"\x45\x00") is None


def test_only_foreign_sources_with_the_same_router_id_conflict():
    heard = [
        {"source": "10.96.7.11", "router_id": 51},
        {"source": "10.96.7.2", "router_id": 51},
        {"source": "10.96.7.3", "router_id": 52},
    ]
    assert vrrp.same_router_id(heard, 51, ["10.96.7.11", "10.96.7.12"]) == [{"source": "10.96.7.2", "router_id": 51}]


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="makes network namespaces")
def test_adverts_from_another_namespace_are_heard():
    tag = os.getpid() % 100000
    listener, sender = f"ironserve-vrrp-l{tag}", f"ironserve-vrrp-s{tag}"
    run("ip", "netns", "add", listener)
    try:
        run("ip", "netns", "add", sender)
        run("ip", "link", "add", "vrl0", "netns", listener, "type", "veth", "peer", "name", "vrs0", "netns", sender)
        run("ip", "-n", listener, "addr", "add", "10.96.7.1/24", "dev", "vrl0")
        run("ip", "-n", sender, "addr", "add", "10.96.7.2/24", "dev", "vrs0")
        run("ip", "-n", listener, "link", "set", "vrl0", "up")
        run("ip", "-n", sender, "link", "set", "vrs0", "up")
        heard = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                listener,
                sys.executable,
                "-c",
                "import json; from ironserve_target import vrrp; print(json.dumps(vrrp.listen('vrl0', 3.0)))",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(MODULE_UTILS)},
        )
        # The listener's own host sends too (its outgoing adverts are not another cluster's), and the sender also
        # speaks another protocol (a busy segment): neither may show up.
        run("ip", "netns", "exec", listener, sys.executable, str(TESTS / "vrrp_sender.py"), "vrl0", "51", "0.6")
        run(
            "ip",
            "netns",
            "exec",
            sender,
            sys.executable,
            "-c",
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "[s.sendto(bytes(40), ('10.96.7.1', 9)) for _ in range(5)]",
        )
        run("ip", "netns", "exec", sender, sys.executable, str(TESTS / "vrrp_sender.py"), "vrs0", "77", "1.4")
        out, _ = heard.communicate(timeout=30)
        assert heard.returncode == 0
        assert [(a["source"], a["router_id"], a["destination"]) for a in json.loads(out)] == [
            ("10.96.7.2", 77, "224.0.0.18")
        ]
    finally:
        subprocess.run(["ip", "netns", "del", sender], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", listener], capture_output=True, check=False)
