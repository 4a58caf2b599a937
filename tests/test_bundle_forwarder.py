"""The bundle forwarder as QEMU's guestfwd runs it: the wrapper lab.up writes, one process per guest connection with
the guest on stdin and stdout, to a server on the loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

from ironserve.lab import lab


def test_a_guest_request_reaches_the_server_and_its_whole_answer_comes_back(tmp_path):
    answer = b"HTTP/1.0 200 OK\r\n\r\n" + bytes(range(256)) * 1024  # larger than one read
    received = []
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve_one():
        connection, _ = server.accept()
        with connection:
            request = b""
            while chunk := connection.recv(4096):  # until the guest's side half-closes
                request += chunk
            received.append(request)
            connection.sendall(answer)

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    wrapper = tmp_path / "bundle-forwarder"
    wrapper.write_text(lab.FORWARDER.format(python=sys.executable, port=port))
    wrapper.chmod(0o755)
    result = subprocess.run([str(wrapper)], input=b"GET /pool/ HTTP/1.0\r\n\r\n", capture_output=True, timeout=30)
    thread.join(timeout=10)
    server.close()
    assert result.returncode == 0, result.stderr
    assert received == [b"GET /pool/ HTTP/1.0\r\n\r\n"]
    assert result.stdout == answer
