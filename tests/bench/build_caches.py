"""Build what every lab's first boot would otherwise build: the base image and the package bundle.

    python tests/bench/build_caches.py

`make test` runs this beside lint and the unit tests: both are downloads from Debian's archive and unpacking
(mostly waiting on the network), the others use the CPU, so the first scenario finds them built instead of building
them in its create (about 200 s of the network scenario's 470 s create here). Each takes the state folder's lock,
so a scenario started meanwhile waits for the same build rather than making its own.
"""

from __future__ import annotations

import sys
import time

from ironserve.bundle.build import build_for_roles
from ironserve.lab import image


def main() -> int:
    for what, build in (("base image", image.build), ("package bundle", build_for_roles)):
        started = time.monotonic()
        built = build(log=print)
        print(f"{what}: {built.folder} ({time.monotonic() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
