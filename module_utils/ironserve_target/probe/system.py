"""How the probe reads a host: files under a root and commands, both replaceable for tests, and the PCI helpers the
GPU and NIC sections share. A missing file or tool never raises: what could not be determined is None, named in
``unknown``."""

from __future__ import annotations

import os
import shutil
import subprocess


class System:
    """Files under ``root`` and commands, both replaceable for tests."""

    def __init__(self, root: str = "/", commands: dict | None = None):
        self.root = root
        self.commands = commands  # {"tool arg ...": (rc, stdout)} in tests; None runs for real
        self.unknown: list[str] = []

    def path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def read(self, path: str) -> str | None:
        try:
            with open(self.path(path), "rb") as handle:
                return handle.read().decode("utf-8", "replace").strip()
        except OSError:
            return None

    def read_bytes(self, path: str) -> bytes | None:
        try:
            with open(self.path(path), "rb") as handle:
                return handle.read()
        except OSError:
            return None

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(path)))
        except OSError:
            return []

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.path(path))

    def resolve(self, path: str) -> str | None:
        """The real path of ``path`` as seen on the host (without the test root)."""
        full = self.path(path)
        if not os.path.lexists(full):
            return None
        real = os.path.realpath(full)
        root = os.path.realpath(self.root)
        return "/" + os.path.relpath(real, root) if root != "/" else real

    def run(self, argv: list[str]) -> tuple[int, str] | None:
        """(exit code, stdout), or None when the tool is not installed."""
        if self.commands is not None:
            return self.commands.get(" ".join(argv))
        if shutil.which(argv[0]) is None:
            return None
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.returncode, result.stdout

    def note(self, what: str) -> None:
        if what not in self.unknown:
            self.unknown.append(what)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _numa(system: System, device_dir: str) -> int | None:
    node = _int(system.read(device_dir + "/numa_node"))
    return None if node is None or node < 0 else node


def _pci_chain(system: System, address: str) -> list[str]:
    """PCI addresses from the root port down to ``address`` (for PCIe switch affinity)."""
    real = system.resolve(f"/sys/bus/pci/devices/{address}")
    if real is None:
        return []
    return [part for part in real.split("/") if part.count(":") == 2 and "." in part]
