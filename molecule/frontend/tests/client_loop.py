"""A client of the front door, run by the test inside its own network namespace on the service segment: sends one
completion at a time to the floating address over TLS (a new connection each, verified against the site CA), and
prints one JSON line per request: when it started and ended (wall clock), and its HTTP status or its error.

    python3 client_loop.py ADDRESS PORT CA_FILE SECONDS [INTERVAL]    (the API key in IRONSERVE_API_KEY)
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
import time


def one_request(address: str, port: int, context: ssl.SSLContext, key: str, timeout: float) -> str:
    connection = http.client.HTTPSConnection(address, port, context=context, timeout=timeout)
    body = json.dumps({"model": "deepseek-standin", "prompt": "ping", "max_tokens": 1})
    try:
        connection.request(
            "POST",
            "/v1/completions",
            body,
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        return str(connection.getresponse().status)
    except (OSError, http.client.HTTPException) as exc:
        return f"error: {type(exc).__name__}: {exc}"
    finally:
        connection.close()


def main() -> None:
    address, port, ca_file, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.1
    context = ssl.create_default_context(cafile=ca_file)
    key = os.environ["IRONSERVE_API_KEY"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.time()
        result = one_request(address, port, context, key, timeout=1.0)
        print(json.dumps({"started": started, "ended": time.time(), "result": result}), flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    main()
