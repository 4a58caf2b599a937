"""Network plans: the data network's IP plan, the checks across hosts, and the files that configure a link.

Used by the mgmt_network and data_network roles through filters (controller side), so the rules are unit-tested
here once: addresses from a declared subnet and a per-host index (netaddr), overlaps and duplicates across hosts,
MTU ranges, and the systemd-networkd and netplan renderings of one interface (plain, bonded, with a VLAN).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import netaddr

from ironserve import role_defaults

MTU_RANGE = (1280, 9216)
BOND_MODES = ("802.3ad", "active-backup", "balance-xor")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def host_address(subnet: str, index: int) -> str:
    """The address with host number ``index`` in ``subnet``, with its prefix: ("198.51.100.0/24", 11) -> .11/24."""
    network = netaddr.IPNetwork(subnet)
    return f"{network.network + index}/{network.prefixlen}"


def _address_problems(variable: str, address: str, subnet: str | None) -> list[str]:
    try:
        interface = netaddr.IPNetwork(address)
    except (netaddr.AddrFormatError, ValueError):
        return [f"{variable} is '{address}', not an address with a prefix like 198.51.100.11/24"]
    problems = []
    if subnet:
        network = netaddr.IPNetwork(subnet)
        if interface.ip not in network or interface.prefixlen != network.prefixlen:
            problems.append(f"{variable} {address} is outside its subnet {subnet}")
        elif network.prefixlen < 31 and interface.ip in (network.network, network.broadcast):
            problems.append(f"{variable} {address} is the network or broadcast address of {subnet}")
    elif interface.prefixlen < 31 and interface.ip in (interface.network, interface.broadcast):
        problems.append(f"{variable} {address} is the network or broadcast address of {interface.cidr}")
    return problems


def plan_problems(hosts: dict[str, dict[str, Any]]) -> list[str]:
    """Every problem with the networks the inventory declares, across all hosts at once.

    ``hosts`` maps a host name to its declaration: mgmt_address (CIDR or ""), mgmt_dhcp, mgmt_mtu, data_subnet,
    data_index, data_address (an explicit CIDR instead of subnet + index), data_mtu, data_macs, mgmt_mac,
    data_bond_mode, data_vlan, mgmt_vlan.
    """
    problems: list[str] = []
    data_owner: dict[str, str] = {}
    subnets: dict[str, str] = {}
    for host, declared in sorted(hosts.items()):
        data_macs = [mac.lower() for mac in declared.get("data_macs") or []]
        mgmt_mac = (declared.get("mgmt_mac") or "").lower()
        for variable, macs in (("mgmt_network_mac", [mgmt_mac] if mgmt_mac else []), ("data_network_macs", data_macs)):
            problems += [
                f"{host}: {variable} has '{mac}', not a MAC like 52:54:00:12:34:56"
                for mac in macs
                if not _MAC.match(mac)
            ]
        if mgmt_mac and mgmt_mac in data_macs:
            problems.append(f"{host}: data_network_macs lists {mgmt_mac}, the management NIC; keep the planes apart")
        for variable, mtu in (
            ("mgmt_network_mtu", declared.get("mgmt_mtu")),
            ("data_network_mtu", declared.get("data_mtu")),
        ):
            if mtu is not None and not MTU_RANGE[0] <= int(mtu) <= MTU_RANGE[1]:
                problems.append(
                    f"{host}: {variable} is {mtu}; use {MTU_RANGE[0]} to {MTU_RANGE[1]} (9000 for jumbo frames)"
                )
        for variable in ("data_vlan", "mgmt_vlan"):
            vlan = declared.get(variable) or 0
            if not 0 <= int(vlan) <= 4094:
                problems.append(
                    f"{host}: {variable.split('_')[0]}_network_vlan is {vlan}; use 1 to 4094, or 0 for none"
                )
        bond_mode = declared.get("data_bond_mode") or ""
        if bond_mode and bond_mode not in BOND_MODES:
            problems.append(f"{host}: data_network_bond_mode is '{bond_mode}'; use one of {', '.join(BOND_MODES)}")
        data_nics = len(data_macs) + len(declared.get("data_pci") or [])
        if bond_mode and data_nics < 2:
            problems.append(f"{host}: data_network_bond_mode is set, but a bond needs two or more data_network_macs")
        if not bond_mode and data_nics > 1:
            problems.append(
                f"{host}: data_network_macs lists {data_nics} NICs; set data_network_bond_mode (802.3ad) to bond "
                "them, or list one"
            )
        mgmt_address = declared.get("mgmt_address") or ""
        if mgmt_address:
            found = _address_problems("mgmt_network_address", mgmt_address, None)
            problems += [f"{host}: {p}" for p in found]
            if not found:
                subnets[f"{host} management network"] = str(netaddr.IPNetwork(mgmt_address).cidr)
        data_address = declared.get("data_address") or ""
        subnet = declared.get("data_subnet") or ""
        if subnet:
            try:
                network = netaddr.IPNetwork(subnet)
            except (netaddr.AddrFormatError, ValueError):
                problems.append(f"{host}: data_network_subnet is '{subnet}', not a subnet like 198.51.100.0/24")
                continue
            if network.ip != network.network:
                problems.append(f"{host}: data_network_subnet {subnet} has host bits set; did you mean {network.cidr}?")
                continue
            subnets[f"{host} data network"] = str(network.cidr)
            index = declared.get("data_index")
            if not data_address:
                if not index:
                    problems.append(
                        f"{host}: data_network_subnet is set, so data_network_host_index must be too (1 or more)"
                    )
                    continue
                if not 0 < int(index) < network.size - (1 if network.prefixlen < 31 else 0):
                    problems.append(
                        f"{host}: data_network_host_index {index} does not fit {subnet} "
                        f"(1 to {network.size - 2 if network.prefixlen < 31 else network.size - 1})"
                    )
                    continue
                data_address = host_address(subnet, int(index))
        if data_address:
            found = _address_problems("data_network_address", data_address, subnet or None)
            problems += [f"{host}: {p}" for p in found]
            if not found:
                ip = str(netaddr.IPNetwork(data_address).ip)
                if ip in data_owner:
                    problems.append(f"data address {ip} is given to both {data_owner[ip]} and {host}")
                data_owner.setdefault(ip, host)
                subnets.setdefault(f"{host} data network", str(netaddr.IPNetwork(data_address).cidr))
    problems += _overlaps(subnets)
    return problems


def _overlaps(subnets: dict[str, str]) -> list[str]:
    """Management and data networks must not overlap; the data networks of all hosts must be one and the same."""
    problems = []
    names = sorted(subnets)
    seen_pairs = set()
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = netaddr.IPNetwork(subnets[first]), netaddr.IPNetwork(subnets[second])
            kinds = {first.rsplit(" ", 2)[-2], second.rsplit(" ", 2)[-2]}
            if kinds == {"management", "data"} and (a in b or b in a or a == b):
                key = tuple(sorted((str(a), str(b))))
                if key not in seen_pairs:
                    seen_pairs.add(key)
                    problems.append(
                        f"the {first} {a} overlaps the {second} {b}; "
                        "the management and data planes need separate subnets"
                    )
            elif kinds == {"data"} and a != b:
                problems.append(
                    f"the {first} {a} differs from the {second} {b}; every host of the data plane needs the same subnet"
                )
    return problems


def interface_name(role: str, data: dict[str, Any]) -> str:
    """The name of the interface that carries the addresses: a bond, a VLAN on top, or the NIC itself (None)."""
    vlan = int(data.get("vlan") or 0)
    base = data.get("bond_name") or (data.get("nic_names") or [None])[0]
    return f"{role}.{vlan}" if vlan else base


def render_networkd(role: str, data: dict[str, Any]) -> dict[str, str]:
    """systemd-networkd files (name -> content) for one plane.

    ``data``: macs, nic_names (kernel names of those NICs), bond_mode ("" for none), bond_name, vlan (0 for none),
    mtu, addresses (CIDRs), dhcp, gateway, dns, domains. No queueing discipline: networkd cannot change an HTB root
    in place (a reconfigure fails the link and drops its addresses), so the QoS service sets it with tc.
    """
    files: dict[str, str] = {}
    prefix = f"10-ironserve-{role}"
    mtu = int(data.get("mtu") or 1500)
    vlan = int(data.get("vlan") or 0)
    bond = data.get("bond_mode") or ""
    bond_name = data.get("bond_name") or f"bond-{role}"
    top = interface_name(role, {**data, "bond_name": bond_name if bond else None})
    upper_links = [f"VLAN={top}"] if vlan else []
    if bond:
        files[f"{prefix}-bond.netdev"] = _ini(
            ("NetDev", [f"Name={bond_name}", "Kind=bond", f"MTUBytes={mtu}"]),
            (
                "Bond",
                [f"Mode={bond}", "MIIMonitorSec=100ms"]
                + (["LACPTransmitRate=fast", "TransmitHashPolicy=layer3+4"] if bond == "802.3ad" else []),
            ),
        )
        for index, mac in enumerate(data["macs"]):
            # Enslaved NICs take the bond's MAC; the permanent one still names them.
            files[f"{prefix}-member{index}.network"] = _ini(
                ("Match", [f"PermanentMACAddress={mac}"]),
                ("Link", [f"MTUBytes={mtu}"]),
                ("Network", [f"Bond={bond_name}"]),
            )
    if vlan:
        files[f"{prefix}-vlan.netdev"] = _ini(
            ("NetDev", [f"Name={top}", "Kind=vlan", f"MTUBytes={mtu}"]), ("VLAN", [f"Id={vlan}"])
        )
    address_lines = _network_lines(data)
    base_match = [f"Name={bond_name}"] if bond else [f"PermanentMACAddress={data['macs'][0]}"]
    if vlan:
        files[f"{prefix}.network"] = _ini(
            ("Match", base_match),
            ("Link", [f"MTUBytes={mtu}"]),
            ("Network", ["LinkLocalAddressing=no", "IPv6AcceptRA=no", *upper_links]),
        )
        files[f"{prefix}-vlan.network"] = _ini(
            ("Match", [f"Name={top}"]), ("Link", [f"MTUBytes={mtu}"]), ("Network", address_lines)
        )
    else:
        files[f"{prefix}.network"] = _ini(
            ("Match", base_match), ("Link", [f"MTUBytes={mtu}"]), ("Network", address_lines)
        )
    return files


def _network_lines(data: dict[str, Any]) -> list[str]:
    lines = ["DHCP=ipv4"] if data.get("dhcp") else []
    lines += [f"Address={address}" for address in data.get("addresses") or []]
    if data.get("gateway"):
        lines.append(f"Gateway={data['gateway']}")
    lines += [f"DNS={server}" for server in data.get("dns") or []]
    if data.get("domains"):
        lines.append("Domains=" + " ".join(data["domains"]))
    lines += ["LinkLocalAddressing=no", "IPv6AcceptRA=no"]
    return lines


def _ini(*sections: tuple[str, list[str]]) -> str:
    body = "\n".join(f"[{name}]\n" + "".join(f"{line}\n" for line in lines) for name, lines in sections)
    return "# Written by ironserve; changes here are replaced on the next run.\n" + body


def render_netplan(role: str, data: dict[str, Any]) -> dict[str, Any]:
    """The same plane as a netplan document (for hosts that use netplan, such as Ubuntu)."""
    mtu = int(data.get("mtu") or 1500)
    vlan = int(data.get("vlan") or 0)
    bond = data.get("bond_mode") or ""
    bond_name = data.get("bond_name") or f"bond-{role}"
    network: dict[str, Any] = {"version": 2, "renderer": "networkd"}
    addressing: dict[str, Any] = {"mtu": mtu, "link-local": [], "accept-ra": False}
    if data.get("dhcp"):
        addressing["dhcp4"] = True
    if data.get("addresses"):
        addressing["addresses"] = list(data["addresses"])
    if data.get("gateway"):
        addressing["routes"] = [{"to": "default", "via": data["gateway"]}]
    if data.get("dns") or data.get("domains"):
        addressing["nameservers"] = {
            "addresses": list(data.get("dns") or []),
            "search": list(data.get("domains") or []),
        }
    ethernets = {f"{role}{index}": {"match": {"macaddress": mac}, "mtu": mtu} for index, mac in enumerate(data["macs"])}
    network["ethernets"] = ethernets
    base = f"{role}0"
    if bond:
        network["bonds"] = {
            bond_name: {
                "interfaces": sorted(ethernets),
                "mtu": mtu,
                "parameters": {"mode": bond, "mii-monitor-interval": "100ms"}
                | ({"lacp-rate": "fast", "transmit-hash-policy": "layer3+4"} if bond == "802.3ad" else {}),
            }
        }
        base = bond_name
    target = network["bonds"][bond_name] if bond else ethernets[base]
    if vlan:
        network["vlans"] = {f"{role}.{vlan}": {"id": vlan, "link": base, **addressing}}
        target.update({"link-local": [], "accept-ra": False})
    else:
        target.update(addressing)
    return {"network": network}


def roce_v2_gid(rdma_devices: list[dict[str, Any]], address: str) -> dict[str, Any] | None:
    """The RDMA device and GID index that carry ``address`` over RoCE v2 (what NCCL_IB_HCA and
    NCCL_IB_GID_INDEX must name), or None while the address has no RoCE v2 GID yet."""
    ip = netaddr.IPAddress(str(address).split("/")[0])
    mapped = ip.ipv6(ipv4_compatible=False) if ip.version == 4 else ip
    for rdma in rdma_devices:
        for entry in rdma.get("gids") or []:
            if (entry.get("type") or "").strip() == "RoCE v2" and netaddr.IPAddress(entry["gid"]) == mapped:
                return {
                    "device": rdma["device"],
                    "port": rdma.get("port", 1),
                    "index": int(entry["index"]),
                    "netdev": entry.get("netdev"),
                }
    return None


def declaration(variables: Any) -> dict[str, Any]:
    """A host's network declaration for :func:`plan_problems`, from its variables (hostvars), each the inventory's
    value or its role's default (role_defaults)."""

    def get(name: str) -> Any:
        return role_defaults.resolved(variables, name)

    static = get("mgmt_network_mode") == "static"
    return {
        "mgmt_mac": get("mgmt_network_mac"),
        "mgmt_address": get("mgmt_network_address") if static else "",
        "mgmt_dhcp": not static,
        "mgmt_mtu": get("mgmt_network_mtu"),
        "mgmt_vlan": get("mgmt_network_vlan"),
        "data_macs": list(get("data_network_macs")),
        "data_pci": list(get("data_network_pci_addresses")),
        "data_subnet": get("data_network_subnet"),
        "data_index": get("data_network_host_index"),  # 0, its default: not given
        "data_address": get("data_network_address"),
        "data_mtu": get("data_network_mtu"),
        "data_vlan": get("data_network_vlan"),
        "data_bond_mode": get("data_network_bond_mode"),
    }


def play_problems(hosts: list[str], hostvars: Any) -> list[str]:
    """:func:`plan_problems` for the hosts of a play, from their variables: what both network roles check (each
    can run on its own) before either changes a host."""
    return plan_problems({host: declaration(hostvars[host]) for host in hosts})


def select_nics(nics: list[dict], macs: list[str], pci_addresses: list[str] | None = None) -> dict[str, Any]:
    """The probed NICs a plane takes: by MAC, then by PCI address (a NIC named both ways once), and what the
    declaration names that this host does not have."""
    wanted_macs = [mac.lower() for mac in macs if mac]
    wanted_pci = [address.lower() for address in pci_addresses or []]
    by_mac = [nic for nic in nics if nic.get("mac") in wanted_macs]
    by_pci = [nic for nic in nics if nic.get("pci_address") in wanted_pci and nic not in by_mac]
    chosen = by_mac + by_pci
    return {
        "nics": chosen,
        "missing_macs": [mac for mac in wanted_macs if mac not in {nic["mac"] for nic in chosen}],
        "missing_pci": [a for a in wanted_pci if a not in {nic.get("pci_address") for nic in chosen}],
    }


def missing_nics_problem(variable: str, missing: list[str], nics: list[dict]) -> list[str]:
    """The one sentence for NICs an inventory names that the host does not have, with what it has."""
    if not missing:
        return []
    found = ", ".join(f"{nic['name']} {nic['mac']}" for nic in sorted(nics, key=lambda n: n["mac"])) or "none"
    verb = "is" if variable.endswith("_mac") else "lists"  # one NIC (mgmt_network_mac) or a list of them
    return [f"{variable} {verb} {', '.join(missing)}, which no NIC of this host has (found: {found})"]


def data_address(variables: Any) -> str:
    """A host's data-plane address in CIDR form (data_network_address, or the subnet's address at the host's
    index), or '' where neither is declared; the data_network role and the network check both use it."""
    declared = declaration(variables)
    if declared["data_address"]:
        return declared["data_address"]
    if declared["data_subnet"] and declared["data_index"]:
        return host_address(declared["data_subnet"], int(declared["data_index"]))
    return ""


NETWORKD_DIR = "/etc/systemd/network"
NETPLAN_DIR = "/etc/netplan"


def render_files(role: str, data: dict[str, Any], renderer: str) -> dict[str, str]:
    """Every file (absolute path -> content) that configures one plane with ``renderer`` (networkd or netplan)."""
    if renderer == "networkd":
        return {f"{NETWORKD_DIR}/{name}": text for name, text in render_networkd(role, data).items()}
    if renderer != "netplan":
        raise ValueError(f"renderer must be networkd or netplan, not {renderer!r}")
    import yaml  # the controller has PyYAML with Ansible; only this renderer needs it

    header = "# Written by ironserve; changes here are replaced on the next run.\n"
    return {
        f"{NETPLAN_DIR}/60-ironserve-{role}.yaml": header + yaml.safe_dump(render_netplan(role, data), sort_keys=False)
    }


# Soft-RoCE in the lab (two TCG guests on one bridge) measured 0.2 Gb/s: a working pair stays well above this floor,
# a pair whose RDMA path barely moves data (retransmitting, wrong GID) falls below it.
SOFT_ROCE_FLOOR_GBITS = 0.01
# On real RoCE/InfiniBand ports: a pair below a quarter of the port's rate is a broken path (PFC, MTU, a bad
# cable or switch port), not a busy one; ib_write_bw on a healthy link reaches 80-95 % of it.
LINK_FLOOR_FRACTION = 0.25
# perftest reports MiB/sec by default (older releases labelled the same 2^20-byte unit "MB/sec") and Gb/sec
# with --report_gbits.
_PERFTEST_UNITS = {"Gb/sec": 1.0, "MiB/sec": 8 * 2**20 / 1e9, "MB/sec": 8 * 2**20 / 1e9}


def _significant(value: float, digits: int = 6) -> float:
    """Rounded to significant digits, not decimal places, so a slow but working link never reads 0.0."""
    return float(f"{value:.{digits}g}")


def perftest_result(output: str) -> dict[str, Any] | None:
    """ib_write_bw's result row: message bytes, iterations done and the average bandwidth in Gb/s (from its
    MiB/sec default or Gb/sec with --report_gbits); None when it printed no result or a unit not known here.
    Warnings (a CPU-frequency notice) may stand between the header and the row."""
    lines = output.splitlines()
    for number, line in enumerate(lines):
        if "BW average" not in line:
            continue
        header = re.split(r"\s{2,}|\t+", line.strip().lstrip("#").strip())
        column = next(i for i, name in enumerate(header) if name.startswith("BW average"))
        unit = re.search(r"\[(.+?)\]", header[column])
        factor = _PERFTEST_UNITS.get(unit.group(1) if unit else "")
        if factor is None:
            return None
        for row in lines[number + 1 :]:
            fields = row.split()
            if len(fields) > column and fields[0].isdigit():
                try:
                    average = float(fields[column]) * factor
                    return {"bytes": int(fields[0]), "iterations": int(fields[1]), "gbits": _significant(average)}
                except ValueError:
                    return None
    return None


def perftest_bandwidth(output: str) -> float | None:
    """The average bandwidth in Gb/s from ib_write_bw's report, or None if it has none."""
    result = perftest_result(output)
    return result["gbits"] if result else None


def bandwidth_floor(rdma_devices: list[dict[str, Any]], device: str) -> float:
    """The default minimum Gb/s for a pair whose client uses RDMA ``device``, from what the probe reports:
    the soft-RoCE lab figure for rdma_rxe, a quarter of the port's rate for a real port, else 0 (a pair must
    still move data)."""
    facts = next((d for d in rdma_devices if d.get("device") == device), {})
    if facts.get("soft_roce"):
        return SOFT_ROCE_FLOOR_GBITS
    rate = facts.get("rate_gbits")
    return _significant(rate * LINK_FLOOR_FRACTION) if isinstance(rate, int | float) and rate > 0 else 0.0


def min_gbits_setting(value: Any) -> float | None:
    """network_check_min_gbits as the rules use it: None for 'auto' (each pair's floor from the probe), else a
    number of Gb/s; anything else is refused naming the variable."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or number < 0:
        raise ValueError(
            f"network_check_min_gbits must be 'auto' (a floor derived from each RDMA port) or a number of Gb/s "
            f"of at least 0, got {value!r}"
        )
    return number


def host_pairs(hosts: list[str]) -> list[dict[str, str]]:
    """Every unordered pair of hosts once, as client and server of a bandwidth test."""
    ordered = sorted(hosts)
    return [{"client": a, "server": b} for i, a in enumerate(ordered) for b in ordered[i + 1 :]]


def check_report(
    hosts: dict[str, dict[str, Any]],
    pings: dict[str, list[dict[str, Any]]],
    bandwidth: list[dict[str, Any]],
    min_gbits: Any = "auto",
) -> dict[str, Any]:
    """The data-plane check's results and its problems, one sentence per broken path naming both hosts.

    ``hosts``: name -> {ip, mtu, device, floor_gbits}; ``pings``: name -> registered ping results (item = the
    peer); ``bandwidth``: registered ib_write_bw client results (item = {client, server}); ``min_gbits``: 'auto'
    (each client's ``floor_gbits``) or one figure for every pair. A pair that moved no data always fails.
    """
    fixed_floor = min_gbits_setting(min_gbits)
    report: dict[str, Any] = {"pings": [], "bandwidth": [], "problems": []}
    for host in sorted(pings):
        for result in pings[host]:
            peer = result["item"]
            size = int(hosts[host]["mtu"]) - 28
            summary = next((line for line in result.get("stdout", "").splitlines() if "packet" in line), "")
            ok = result.get("rc") == 0
            report["pings"].append(
                {"from": host, "to": peer, "address": hosts[peer]["ip"], "bytes": size, "ok": ok, "summary": summary}
            )
            if not ok:
                report["problems"].append(
                    f"{host} -> {peer} ({hosts[peer]['ip']}): {size}-byte pings with don't-fragment got no answer "
                    f"({summary or result.get('stderr', '').strip() or 'no output'}); "
                    "check the MTU of every NIC, bond, VLAN and switch port on the path"
                )
    for result in bandwidth:
        pair = result["item"]
        client = hosts[pair["client"]]
        floor = fixed_floor if fixed_floor is not None else float(client.get("floor_gbits") or 0)
        measured = perftest_result(result.get("stdout", "")) if result.get("rc") == 0 else None
        gbits = measured["gbits"] if measured else None
        moved = bool(measured) and measured["iterations"] > 0 and measured["gbits"] > 0
        ok = moved and gbits >= floor
        report["bandwidth"].append(
            {
                "client": pair["client"],
                "server": pair["server"],
                "device": client.get("device"),
                "gbits": gbits,
                "floor_gbits": floor,
                "ok": ok,
            }
        )
        if ok:
            continue
        if measured is None:
            reason = (result.get("stderr", "").strip().splitlines() or ["ib_write_bw reported no bandwidth"])[-1]
        elif not moved:
            reason = "the pair moved no data (0 iterations or 0 Gb/s); check the RDMA device, its GID and the path"
        else:
            source = "network_check_min_gbits" if fixed_floor is not None else "the floor derived from the port"
            reason = f"{gbits} Gb/s is below {source} ({floor} Gb/s)"
        report["problems"].append(
            f"RDMA {pair['client']} -> {pair['server']} ({hosts[pair['server']]['ip']}): {reason}"
        )
    return report


def ipv4_entries(facts: dict[str, Any], interface: str) -> list[dict[str, Any]]:
    """Every IPv4 address of ``interface`` in Ansible's facts (its primary, then its secondaries), each as the facts
    give it ({address, prefix, ...})."""
    entry = facts.get(interface.replace("-", "_")) or {}
    return [candidate for candidate in [entry.get("ipv4"), *(entry.get("ipv4_secondaries") or [])] if candidate]


def subnet_of_address(facts: dict[str, Any], address: str) -> str:
    """The subnet (CIDR) of the interface that carries IPv4 ``address`` in Ansible's facts, or "" when no interface
    has it: the network a service bound to that address is meant for."""
    for name in facts.get("interfaces", []):
        for candidate in ipv4_entries(facts, name):
            if address and candidate.get("address") == address and candidate.get("prefix"):
                return str(ipaddress.ip_interface(f"{address}/{candidate['prefix']}").network)
    return ""


def address_of_mac(facts: dict[str, Any], mac: str) -> str:
    """The IPv4 address of the interface with ``mac`` in Ansible's facts, else the default IPv4 address, else ""."""
    wanted = (mac or "").lower()
    for name in facts.get("interfaces", []):
        interface = facts.get(name.replace("-", "_")) or {}
        if wanted and (interface.get("macaddress") or "").lower() == wanted and interface.get("ipv4"):
            return interface["ipv4"].get("address", "")
    return (facts.get("default_ipv4") or {}).get("address", "")
