"""The probe's NIC section: physical NICs, their links and RDMA devices, and each GPU's PCIe and NUMA distance to
each NIC (NCCL's view)."""

from __future__ import annotations

import os

from .system import System, _int, _numa, _pci_chain


def _rate_gbits(rate: str | None) -> float | None:
    """A port's rate from sysfs ("100 Gb/sec (4X EDR)") in Gb/s, or None when it reads otherwise."""
    try:
        return float((rate or "").split()[0]) if (rate or "").split()[1:2] == ["Gb/sec"] else None
    except ValueError:
        return None


def _rdma_devices(system: System) -> list[dict]:
    devices = []
    for ib in system.listdir("/sys/class/infiniband"):
        base = f"/sys/class/infiniband/{ib}"
        for port in system.listdir(base + "/ports"):
            pbase = f"{base}/ports/{port}"
            netdev = system.read(f"{pbase}/gid_attrs/ndevs/0")
            if not netdev:
                nets = system.listdir(base + "/device/net")
                netdev = nets[0] if nets else None
            state = system.read(pbase + "/state") or ""
            gids = []
            for index in range(16):
                gid = system.read(f"{pbase}/gids/{index}")
                if gid and gid.replace("0", "").replace(":", ""):
                    gids.append(
                        {
                            "index": index,
                            "gid": gid,
                            "type": system.read(f"{pbase}/gid_attrs/types/{index}"),
                            "netdev": system.read(f"{pbase}/gid_attrs/ndevs/{index}"),
                        }
                    )
            devices.append(
                {
                    "device": ib,
                    "port": _int(port),
                    "netdev": netdev,
                    "state": state.split(":", 1)[-1].strip() or None,
                    "link_layer": system.read(pbase + "/link_layer"),
                    "rate_gbits": _rate_gbits(system.read(pbase + "/rate")),
                    # soft-RoCE (rdma_rxe) devices name their Ethernet parent in a 'parent' file.
                    "soft_roce": ib.startswith("rxe") or system.exists(base + "/parent"),
                    "gids": gids,
                }
            )
    return devices


def probe_nics(system: System) -> dict:
    rdma = _rdma_devices(system)
    nics = []
    for name in system.listdir("/sys/class/net"):
        base = f"/sys/class/net/{name}"
        if not system.exists(base + "/device"):
            continue  # virtual: loopback, bridges, bonds, VLANs, rxe's own
        device = system.resolve(base + "/device") or ""
        driver = system.resolve(base + "/device/driver")
        speed = _int(system.read(base + "/speed"))
        pci = os.path.basename(device) if device.count(":") >= 2 else None
        if pci and pci.startswith("virtio"):
            pci = None
        if pci is None:
            parent = os.path.basename(os.path.dirname(device))
            pci = parent if parent.count(":") == 2 else None
        nics.append(
            {
                "name": name,
                # A bond member shows the bond's MAC; its own stays in perm_hwaddr.
                "mac": (
                    system.read(base + "/bonding_slave/perm_hwaddr") or system.read(base + "/address") or ""
                ).lower()
                or None,
                "driver": os.path.basename(driver) if driver else None,
                "pci_address": pci,
                "speed_mbps": speed if speed is not None and speed > 0 else None,
                "mtu": _int(system.read(base + "/mtu")),
                "link": system.read(base + "/operstate"),
                "numa_node": _numa(system, base + "/device") if system.exists(base + "/device/numa_node") else None,
                "sriov_total_vfs": _int(system.read(base + "/device/sriov_totalvfs")),
                "rdma": [r for r in rdma if r["netdev"] == name],
            }
        )
    return {"nics": nics, "rdma_devices": rdma}


# Host ----------------------------------------------------------------------------------------------


def gpu_nic_affinity(system: System, gpus: list[dict], nics: list[dict]) -> list[dict]:
    """For each GPU and physical NIC: same PCIe switch, same NUMA node, or across NUMA nodes (NCCL's view)."""
    pairs = []
    for gpu in gpus:
        if not gpu.get("pci_address"):
            continue
        gpu_chain = _pci_chain(system, gpu["pci_address"])
        for nic in nics:
            if not nic.get("pci_address"):
                continue
            nic_chain = _pci_chain(system, nic["pci_address"])
            shared = 0
            for a, b in zip(gpu_chain[:-1], nic_chain[:-1], strict=False):
                if a != b:
                    break
                shared += 1
            if shared >= 2:  # a common bridge below the root port: a PCIe switch
                relation = "same_pcie_switch"
            elif gpu["numa_node"] is not None and gpu["numa_node"] == nic["numa_node"]:
                relation = "same_numa_node"
            elif gpu["numa_node"] is None or nic["numa_node"] is None:
                relation = "unknown"
            else:
                relation = "cross_numa"
            pairs.append(
                {"gpu": gpu["pci_address"], "nic": nic["name"], "relation": relation, "rdma": bool(nic["rdma"])}
            )
    return pairs
