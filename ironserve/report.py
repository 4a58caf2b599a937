"""The per-host hardware report for people (Markdown), from the probe's facts."""

from __future__ import annotations

from typing import Any


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "?"
    gib = size_bytes / 1024**3
    return f"{gib / 1024:.1f} TiB" if gib >= 1024 else f"{gib:.0f} GiB"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("|", "\\|")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def markdown(hostname: str, hw: dict[str, Any]) -> str:
    host, gpu = hw.get("host", {}), hw.get("gpu", {})
    storage, network = hw.get("storage", {}), hw.get("network", {})
    out = [f"# Hardware report: {hostname}", ""]
    out += _table(
        ["CPU", "sockets / cores / threads", "memory", "NUMA nodes", "kernel", "OS", "IOMMU", "Secure Boot"],
        [
            [
                host.get("cpu_model"),
                f"{host.get('sockets')} / {host.get('cores')} / {host.get('threads')}",
                f"{(host.get('memory_mib') or 0) // 1024} GiB",
                host.get("numa_nodes"),
                host.get("kernel"),
                host.get("os_name"),
                host.get("iommu"),
                host.get("secure_boot"),
            ]
        ],
    )
    driver = (
        f"driver {gpu.get('driver_version')}, CUDA {gpu.get('cuda_version')}"
        if gpu.get("driver_loaded")
        else "no NVIDIA driver loaded"
    )
    out += ["", f"## GPUs: {gpu.get('count', 0)} ({driver}; NVSwitch: {_cell(gpu.get('nvswitch'))})", ""]
    if gpu.get("gpus"):
        out += _table(
            ["PCI", "model", "architecture", "CC", "memory GiB", "open module", "FP8", "NUMA", "MIG", "ECC"],
            [
                [
                    g.get("pci_address"),
                    g.get("model"),
                    g.get("architecture"),
                    g.get("compute_capability"),
                    g.get("memory_gib"),
                    g.get("open_kernel_module"),
                    g.get("fp8"),
                    g.get("numa_node"),
                    g.get("mig_mode"),
                    g.get("ecc_mode"),
                ]
                for g in gpu["gpus"]
            ],
        )
    out += ["", "## Disks", ""]
    out += _table(
        ["device", "kind", "rotational", "size", "serial", "stable id", "NUMA", "in use"],
        [
            [
                d["path"],
                d["kind"],
                d["rotational"],
                _size(d.get("size_bytes")),
                d.get("serial"),
                d.get("by_id"),
                d.get("numa_node"),
                "; ".join(d["in_use_reasons"]) or "free",
            ]
            for d in storage.get("disks", [])
        ],
    )
    out += ["", "## NICs", ""]
    out += _table(
        ["name", "MAC", "driver", "PCI", "speed Mb/s", "MTU", "link", "NUMA", "RDMA"],
        [
            [
                n["name"],
                n.get("mac"),
                n.get("driver"),
                n.get("pci_address"),
                n.get("speed_mbps"),
                n.get("mtu"),
                n.get("link"),
                n.get("numa_node"),
                ", ".join(f"{r['device']} port {r['port']} {r['state']} ({r['link_layer']})" for r in n["rdma"]) or "-",
            ]
            for n in network.get("nics", [])
        ],
    )
    if hw.get("gpu_nic_affinity"):
        out += ["", "## GPU to NIC affinity", ""]
        out += _table(
            ["GPU", "NIC", "relation", "RDMA"],
            [[a["gpu"], a["nic"], a["relation"], a["rdma"]] for a in hw["gpu_nic_affinity"]],
        )
    if hw.get("unknown"):
        out += ["", "## Not determined", ""] + [f"- {item}" for item in hw["unknown"]]
    return "\n".join(out) + "\n"
