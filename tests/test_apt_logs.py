"""apt's terminal log read for the initramfs rebuilds a package transaction made."""

from __future__ import annotations

from apt_logs import InitramfsUpdates, initramfs_updates_installing, transactions

# The NVIDIA driver's transaction as this machine's apt logged it, the unpacking and configuring of the 41 packages
# between the lines kept here shortened; before it, the base stage's.
WITHOUT_DEFERRAL = """\

Log started: 2026-12-07  13:57:52
Unpacking chrony (4.6.1-3) ...
Log ended: 2026-12-07  13:58:31

Log started: 2026-12-07  13:59:01
Unpacking nvidia-kernel-support (550.163.01-2) ...
Setting up dkms (3.2.2-1~deb13u1) ...
Processing triggers for initramfs-tools (0.148.4) ...
update-initramfs: Generating /boot/initrd.img-6.12.118+deb13-amd64
Setting up nvidia-kernel-dkms (550.163.01-2) ...
Processing triggers for initramfs-tools (0.148.4) ...
update-initramfs: Generating /boot/initrd.img-6.12.118+deb13-amd64
Processing triggers for initramfs-tools (0.148.4) ...
update-initramfs: Generating /boot/initrd.img-6.12.118+deb13-amd64
Log ended: 2026-12-07  14:05:40
"""

WITH_DEFERRAL = """\
Log started: 2026-12-07  13:59:01
Unpacking nvidia-kernel-support (550.163.01-2) ...
Processing triggers for initramfs-tools (0.148.4) ...
update-initramfs: deferred by ironserve to the end of the stage
Processing triggers for initramfs-tools (0.148.4) ...
update-initramfs: deferred by ironserve to the end of the stage
Log ended: 2026-12-07  14:00:40
Log started: 2026-12-07  14:00:56
Unpacking docker.io (26.1.5+dfsg1-9+deb13u1+b1) ...
Log ended: 2026-12-07  14:01:42
Log started: 2026-12-07  14:02:00
Unpacking nvidia-smi (550.163.01-2) ...
"""


def test_each_transaction_is_read_apart_and_an_unfinished_one_is_left_out():
    assert [output.splitlines()[0] for output in transactions(WITH_DEFERRAL)] == [
        "Unpacking nvidia-kernel-support (550.163.01-2) ...",
        "Unpacking docker.io (26.1.5+dfsg1-9+deb13u1+b1) ...",
    ]


def test_counts_the_rebuilds_made_and_deferred_in_the_packages_transaction():
    assert initramfs_updates_installing(WITHOUT_DEFERRAL, "nvidia-kernel-support") == InitramfsUpdates(3, 0)
    assert initramfs_updates_installing(WITH_DEFERRAL, "nvidia-kernel-support") == InitramfsUpdates(0, 2)
    assert initramfs_updates_installing(WITH_DEFERRAL, "docker.io") == InitramfsUpdates(0, 0)
    assert initramfs_updates_installing(WITH_DEFERRAL, "mdadm") is None
