"""Read apt's terminal log (/var/log/apt/term.log) the way the scenarios' checks need it.

apt keeps the output of every transaction's dpkg runs there, between ``Log started: DATE`` and ``Log ended: DATE``.
initramfs-tools prints ``update-initramfs: Generating /boot/initrd.img-VERSION`` for each rebuild; the recorder of
ironserve's deferral (library/ironserve_initramfs.py) prints ``update-initramfs: deferred by ironserve`` instead.
"""

from __future__ import annotations

from typing import NamedTuple

from ironserve_target.initramfs import REQUESTS_FILE

BUILT = "update-initramfs: Generating "
DEFERRED = "update-initramfs: deferred by ironserve"


class InitramfsUpdates(NamedTuple):
    built: int
    deferred: int


def transactions(term_log: str) -> list[str]:
    """The output of each apt transaction, oldest first."""
    found: list[str] = []
    current: list[str] | None = None
    for line in term_log.splitlines():
        if line.startswith("Log started:"):
            current = []
        elif line.startswith("Log ended:") and current is not None:
            found.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return found


def initramfs_updates_installing(term_log: str, package: str) -> InitramfsUpdates | None:
    """Rebuilds made and deferred in the transaction that first unpacked ``package``; None: no such transaction."""
    for output in transactions(term_log):
        if f"Unpacking {package} (" in output:
            lines = output.splitlines()
            return InitramfsUpdates(
                sum(line.startswith(BUILT) for line in lines), sum(line.startswith(DEFERRED) for line in lines)
            )
    return None


def check_initramfs_deferred(host, package: str) -> str:
    """On a converged machine (a testinfra host): the transaction that first unpacked ``package`` made no initramfs
    rebuild and deferred at least one, and no request is left unmade. Returns the kernel's initramfs, for the
    caller to read what it must hold."""
    updates = initramfs_updates_installing(host.file("/var/log/apt/term.log").content_string, package)
    assert updates is not None, f"no apt transaction unpacked {package}"
    assert updates.built == 0, updates
    assert updates.deferred > 0, updates
    assert not host.file(REQUESTS_FILE).exists, host.file(REQUESTS_FILE).content_string
    return f"/boot/initrd.img-{host.check_output('uname -r')}"
