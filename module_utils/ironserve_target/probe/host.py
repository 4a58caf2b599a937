"""The probe's host section: CPU, memory, Secure Boot, the OS release and the kernel."""

from __future__ import annotations

from .system import System, _int

EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"


def _cpu(system: System) -> dict:
    models, sockets, cores, threads = set(), set(), set(), 0
    physical = "0"
    for line in (system.read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            threads += 1
        elif key == "model name":
            models.add(value)
        elif key == "physical id":
            physical = value
            sockets.add(value)
        elif key == "core id":
            cores.add((physical, value))
    return {
        "cpu_model": sorted(models)[0] if models else None,
        "sockets": len(sockets) or (1 if threads else None),
        "cores": len(cores) or threads or None,
        "threads": threads or None,
    }


def _meminfo(system: System) -> dict[str, int]:
    values = {}
    for line in (system.read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            values[key] = _int(parts[0]) or 0
    return values


def _secure_boot(system: System) -> str:
    if not system.exists("/sys/firmware/efi"):
        return "not_efi"
    data = system.read_bytes(f"/sys/firmware/efi/efivars/SecureBoot-{EFI_GLOBAL}")
    if data is None or len(data) < 5:
        system.note("Secure Boot state (efivars unreadable)")
        return "unknown"
    return "enabled" if data[4] == 1 else "disabled"


def _os_release(system: System) -> dict:
    values = {}
    for line in (system.read("/etc/os-release") or "").splitlines():
        key, _, value = line.partition("=")
        values[key] = value.strip().strip('"')
    return {
        "os_id": values.get("ID"),
        "os_version": values.get("VERSION_ID"),
        "os_name": values.get("PRETTY_NAME"),
        "os_codename": values.get("VERSION_CODENAME"),
    }


def probe_host(system: System) -> dict:
    memory = _meminfo(system)
    nodes = [n for n in system.listdir("/sys/devices/system/node") if n.startswith("node") and n[4:].isdigit()]
    iommu = bool(system.listdir("/sys/kernel/iommu_groups"))
    return {
        **_cpu(system),
        "memory_mib": memory["MemTotal"] // 1024 if "MemTotal" in memory else None,
        "numa_nodes": len(nodes) or 1,
        "hugepages_total": memory.get("HugePages_Total"),
        "hugepage_size_kib": memory.get("Hugepagesize"),
        "kernel": system.read("/proc/sys/kernel/osrelease"),
        **_os_release(system),
        "iommu": iommu,
        "secure_boot": _secure_boot(system),
        "virtualised": system.read("/sys/class/dmi/id/sys_vendor") in ("QEMU", "KVM")
        or "hypervisor" in (system.read("/proc/cpuinfo") or ""),
    }
