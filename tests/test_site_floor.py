"""The site-floor benchmark's twin files: the first machine's networkd files with the twin's MACs and address."""

from __future__ import annotations

import io
import tarfile

from bench import site_floor


def _tar(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return out.getvalue()


def _read(raw: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}


def test_networkd_files_get_the_twins_identity_and_nothing_else_changes():
    network = "[Match]\nMACAddress=52:54:9a:14:3c:c7\n[Network]\nAddress=10.99.0.11/24\n"
    chrony = "allow 10.99.0.11/24\n"
    raw = _tar({"etc/systemd/network/20-data.network": network, "etc/chrony/chrony.conf": chrony})
    swaps = {"52:54:9a:14:3c:c7": "52:54:07:da:53:49", "10.99.0.11/": "10.99.0.12/"}
    files = _read(site_floor.twin_tar(raw, swaps))
    assert files["etc/systemd/network/20-data.network"] == (
        "[Match]\nMACAddress=52:54:07:da:53:49\n[Network]\nAddress=10.99.0.12/24\n"
    )
    assert files["etc/chrony/chrony.conf"] == chrony


def test_the_floor_spec_is_the_demo_lab_with_its_declared_macs_and_free_ports():
    machines = site_floor.spec().machines
    assert [m.name for m in machines] == ["gpu-a", "gpu-b"]
    assert machines[0].mgmt_mac == "52:54:2a:d5:44:5c"
    assert all(m.ssh_port is None for m in machines)


def test_the_data_address_is_the_subnet_with_the_host_index_and_prefix():
    assert site_floor._data_address({"data_network_host_index": 12}) == "10.99.0.12/24"
