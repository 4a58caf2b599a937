"""The test bench: QEMU machines that emulate GPU-server hardware (NVMe, SCSI disks, two networks)."""
