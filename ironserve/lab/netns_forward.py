"""The two forwards a light machine needs, as QEMU's user network gives them to a QEMU machine.

    python -m ironserve.lab.netns_forward --netns-pid PID --ssh-port PORT [--bundle-port PORT] --folder DIR

- 127.0.0.1:SSH_PORT on this machine -> 127.0.0.1:22 inside the machine's network namespace (QEMU's hostfwd);
- BUNDLE_ADDRESS:80 inside the namespace -> 127.0.0.1:BUNDLE_PORT on this machine, the bundle server (QEMU's
  guestfwd), so that the machine reaches its package source and nothing else.

Sockets belong to the network namespace of the thread that creates them, so one thread enters the machine's
namespace (setns) and makes every socket there; the main thread stays here. ``--folder`` is the machine's lab
folder: it is on this process's command line so that teardown and ``ironserve lab leftovers`` recognise it.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import queue
import selectors
import socket
import threading

from ironserve.lab.spec import BUNDLE_GUEST_ADDRESS, BUNDLE_GUEST_PORT

CLONE_NEWNET = 0x40000000
BUFFER = 65536


def enter_netns(pid: int | None = None, path: str | None = None) -> None:
    """Move the calling thread into the network namespace of process ``pid``, or the one at ``path`` (a namespace
    ``ip netns`` made: /run/netns/NAME)."""
    where = path or f"/proc/{pid}/ns/net"
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(where, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns into the network namespace of {where}: {os.strerror(error)}")
    finally:
        os.close(fd)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(BUFFER):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        source.close()


def _join(a: socket.socket, b: socket.socket) -> None:
    # Each direction closes its own source socket; dup lets both directions own a handle.
    threading.Thread(target=_pipe, args=(a, b.dup()), daemon=True).start()
    threading.Thread(target=_pipe, args=(b, a.dup()), daemon=True).start()


class Inside(threading.Thread):
    """The thread in the machine's namespace: it listens for the bundle there and opens connections to sshd."""

    def __init__(self, pid: int, with_bundle: bool):
        super().__init__(daemon=True)
        self.pid = pid
        self.with_bundle = with_bundle
        self.requests: queue.Queue = queue.Queue()
        self.ready: queue.Queue = queue.Queue()

    def run(self) -> None:
        try:
            enter_netns(self.pid)
            bundle = None
            if self.with_bundle:
                bundle = socket.socket()
                bundle.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                bundle.bind((BUNDLE_GUEST_ADDRESS, BUNDLE_GUEST_PORT))
                bundle.listen(16)
            self.ready.put(bundle)
        except OSError as exc:
            self.ready.put(exc)
            return
        while True:
            reply = self.requests.get()
            try:
                reply.put(socket.create_connection(("127.0.0.1", 22), timeout=10))
            except OSError as exc:
                reply.put(exc)

    def connect_sshd(self) -> socket.socket:
        reply: queue.Queue = queue.Queue()
        self.requests.put(reply)
        result = reply.get()
        if isinstance(result, Exception):
            raise result
        result.settimeout(None)
        return result


def serve(pid: int, ssh_port: int, bundle_port: int | None) -> None:
    inside = Inside(pid, bundle_port is not None)
    inside.start()
    bundle_listener = inside.ready.get()
    if isinstance(bundle_listener, Exception):
        raise bundle_listener
    ssh_listener = socket.socket()
    ssh_listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ssh_listener.bind(("127.0.0.1", ssh_port))
    ssh_listener.listen(16)
    selector = selectors.DefaultSelector()
    selector.register(ssh_listener, selectors.EVENT_READ, "ssh")
    if bundle_listener is not None:
        selector.register(bundle_listener, selectors.EVENT_READ, "bundle")
    while True:
        for key, _ in selector.select():
            client, _ = key.fileobj.accept()
            try:
                if key.data == "ssh":
                    _join(client, inside.connect_sshd())
                else:
                    _join(client, socket.create_connection(("127.0.0.1", bundle_port), timeout=10))
            except OSError:
                client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--netns-pid", type=int, required=True, help="a process in the machine's network namespace")
    parser.add_argument("--ssh-port", type=int, required=True, help="port on 127.0.0.1 that reaches the machine's sshd")
    parser.add_argument("--bundle-port", type=int, help="port of the bundle server on 127.0.0.1")
    parser.add_argument("--folder", required=True, help="the machine's lab folder (marks this process as the lab's)")
    args = parser.parse_args(argv)
    serve(args.netns_pid, args.ssh_port, args.bundle_port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
