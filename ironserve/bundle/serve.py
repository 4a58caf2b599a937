"""Serve a bundle folder over HTTP: what an air-gapped site points its hosts at.

Read-only and quiet: a plain static file server (any web server will do in production; this one needs
nothing but Python). Requests are logged to a file for troubleshooting.
"""

from __future__ import annotations

import functools
import http.server
import sys
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    log_file = None

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class names it so
        if self.log_file is not None:
            self.log_file.write(f"{self.address_string()} {format % args}\n")
            self.log_file.flush()


def serve(folder: Path, bind: str, port: int, log_path: Path | None = None) -> None:
    if not (folder / "dists").is_dir():
        raise SystemExit(f"{folder} is not a bundle (no dists/ folder); run 'ironserve bundle build' first")
    _Handler.log_file = log_path.open("a") if log_path else None
    handler = functools.partial(_Handler, directory=str(folder))
    with http.server.ThreadingHTTPServer((bind, port), handler) as server:
        print(f"serving {folder} on http://{bind}:{server.server_address[1]}/", file=sys.stderr, flush=True)
        server.serve_forever()
