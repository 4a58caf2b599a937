"""One guest connection to the lab's bundle server: QEMU's guestfwd starts this per connection, with the guest on
stdin and stdout (``python -I -m ironserve.lab.bundle_forwarder PORT``, from the wrapper lab.up writes).

Copies both ways until each side closes; the guest's end of input half-closes the server connection so an HTTP
request without keep-alive still gets its answer.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading


def _guest_to_server(sock: socket.socket) -> None:
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        sock.sendall(data)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def main(port: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    threading.Thread(target=_guest_to_server, args=(sock,), daemon=True).start()
    while True:
        data = sock.recv(65536)
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]


if __name__ == "__main__":
    main(int(sys.argv[1]))
