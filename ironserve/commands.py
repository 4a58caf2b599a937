"""Running the controller's own tools (mmdebstrap, apt-get, gpg, qemu-img) with errors people can act on."""

from __future__ import annotations

import subprocess


def run_step(step: str, argv: list[str], error: type[Exception], **kwargs) -> subprocess.CompletedProcess:
    """Run ``argv`` for ``step``; raise ``error`` naming the step, the command and the output's last lines."""
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as exc:
        raise error(f"{step}: {argv[0]} is not installed (run 'make setup')") from exc
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or exc.stdout or "").strip().splitlines()[-20:])
        raise error(f"{step} failed (exit {exc.returncode}): {' '.join(argv)}\n{tail}") from exc
