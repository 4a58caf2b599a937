"""The package bundle: what the roles declare, and a signed index that apt can trust."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ironserve import paths
from ironserve.bundle import build

pytestmark = pytest.mark.skipif(shutil.which("apt-ftparchive") is None, reason="needs apt-utils (make setup)")


def test_roles_declare_literal_packages():
    declared = build.declared_packages(paths.REPO_ROOT / "roles")
    assert "python3-apt" in declared["package_source/package_source_packages"]
    assert {"pciutils", "nvme-cli"} <= set(declared["host_baseline/host_baseline_packages"])
    # The two kernel-module flavours conflict: each is its own list, resolved on its own.
    assert "nvidia-open-kernel-dkms=550.163.01-2" in declared["nvidia_driver/nvidia_driver_packages"]
    assert "nvidia-kernel-dkms=550.163.01-2" in declared["nvidia_driver/nvidia_driver_proprietary_packages"]


def test_templated_package_names_are_refused(tmp_path):
    vars_dir = tmp_path / "myrole" / "vars"
    vars_dir.mkdir(parents=True)
    (vars_dir / "Debian.yml").write_text("myrole_packages:\n  - '{{ driver_package }}'\n")
    with pytest.raises(build.BundleError, match=r"myrole_packages holds .*literal Debian package names"):
        build.declared_packages(tmp_path)


def test_request_key_ignores_order_and_duplicates():
    assert build.request_key(["b", "a", "a"]) == build.request_key(["a", "b"])
    assert build.request_key(["a"]) != build.request_key(["a", "b"])


def _make_deb(folder: Path, name: str, version: str) -> Path:
    root = folder / f"{name}-src"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/doc" / name).mkdir(parents=True)
    (root / "usr/share/doc" / name / "README").write_text("test package\n")
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.invalid>\n"
        "Description: test package\n"
    )
    deb = folder / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True, capture_output=True)
    return deb


@pytest.fixture
def ironserve_home(monkeypatch):
    """A private state folder, directly in the temporary folder: pytest's own folders (deeper under pytest-xdist) can
    be too long for gpg-agent's socket. The signing stops its gpg-agent itself (tests below check it); the stop here
    only guards against a test failing before that."""
    with tempfile.TemporaryDirectory(prefix="ironserve-home-") as folder:
        home = Path(folder)
        monkeypatch.setenv("IRONSERVE_HOME", str(home))
        yield home
        subprocess.run(["gpgconf", "--homedir", str(home / "bundle-gpg"), "--kill", "all"], capture_output=True)


def test_a_home_too_long_for_gpg_agents_socket_is_refused_naming_the_variable(tmp_path, monkeypatch):
    home = tmp_path / ("x" * 100)
    monkeypatch.setenv("IRONSERVE_HOME", str(home))
    with pytest.raises(build.BundleError, match="IRONSERVE_HOME is too long for gpg-agent's socket") as refused:
        build.signing_home()
    assert "set IRONSERVE_HOME to a shorter folder" in str(refused.value)
    assert not home.exists()


def test_a_relative_home_is_measured_where_gpg_would_put_it(tmp_path, monkeypatch):
    deep = tmp_path / ("x" * 100)
    deep.mkdir()
    monkeypatch.chdir(deep)
    monkeypatch.setenv("IRONSERVE_HOME", "h")
    with pytest.raises(build.BundleError, match=f"{deep}/h/bundle-gpg/S.gpg-agent.browser"):
        build.signing_home()


def _agent_socket(home: Path) -> Path:
    """Where gpg-agent listens for the bundle's key while it runs (gone once it stops)."""
    listed = subprocess.run(
        ["gpgconf", "--homedir", str(home / "bundle-gpg"), "--list-dirs", "agent-socket"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(listed.stdout.strip())


def test_index_is_signed_and_verifies_with_the_published_key(tmp_path, ironserve_home):
    bundle = tmp_path / "bundle"
    (bundle / "pool").mkdir(parents=True)
    _make_deb(bundle / "pool", "ironserve-probe", "1.0-1")
    build._write_index(bundle, build.signing_home())
    assert not _agent_socket(ironserve_home).exists(), "the signing left its gpg-agent running"

    packages = (bundle / "dists/ironserve/main/binary-amd64/Packages").read_text()
    assert "Package: ironserve-probe\n" in packages
    assert "Version: 1.0-1\n" in packages
    assert "Filename: pool/ironserve-probe_1.0-1_all.deb" in packages
    release = (bundle / "dists/ironserve/Release").read_text()
    assert "Suite: ironserve" in release
    assert "main/binary-amd64/Packages.gz" in release

    # A host that knows only the published public key accepts the index; a tampered one is refused.
    keyring = tmp_path / "keyring.gpg"
    subprocess.run(
        ["gpg", "--batch", "--yes", "--dearmor", "-o", str(keyring), str(bundle / build.KEY_FILE)],
        check=True,
        capture_output=True,
    )
    inrelease = bundle / "dists/ironserve/InRelease"
    verified = subprocess.run(["gpgv", "--keyring", str(keyring), str(inrelease)], capture_output=True)
    assert verified.returncode == 0, verified.stderr
    inrelease.write_text(inrelease.read_text().replace("Suite: ironserve", "Suite: tampered"))
    assert subprocess.run(["gpgv", "--keyring", str(keyring), str(inrelease)], capture_output=True).returncode != 0


def test_signing_key_is_made_once(ironserve_home):
    first = build.signing_home()
    assert not _agent_socket(ironserve_home).exists(), "making the key left its gpg-agent running"
    fingerprint = build._gpg(first, "--with-colons", "--list-secret-keys").stdout
    assert build._gpg(build.signing_home(), "--with-colons", "--list-secret-keys").stdout == fingerprint


def test_roles_pin_their_binaries_with_the_wheel_that_carries_them():
    binaries = build.declared_binaries(paths.REPO_ROOT / "roles")
    assert set(binaries) >= {"weed", "rclone"}
    for pin in binaries.values():
        assert len(pin["sha256"]) == 64
        assert pin["pypi_name"].endswith("-bin")


def _fake_wheel(cache: Path, payload: bytes) -> None:
    import zipfile

    cache.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(cache / "tool_bin-1.2-py3-none-manylinux_2_28_x86_64.whl", "w") as wheel:
        wheel.writestr("tool_bin-1.2.data/scripts/tool", payload)
        wheel.writestr("tool_bin-1.2.dist-info/METADATA", "Name: tool-bin\n")


def test_a_binary_is_taken_from_its_wheel_only_when_the_checksum_matches(tmp_path, ironserve_home):
    import hashlib

    payload = b"\x7fELF pretend executable"
    _fake_wheel(ironserve_home / "bundle-wheels", payload)
    pin = {
        "version": "1.2",
        "sha256": hashlib.sha256(payload).hexdigest(),
        "pypi_name": "tool-bin",
        "pypi_platform": "manylinux_2_28_x86_64",
    }
    served = build._binary_from_wheel("tool", pin, tmp_path / "bundle")
    assert served == tmp_path / "bundle/files/tool/1.2/tool"
    assert served.read_bytes() == payload
    assert served.stat().st_mode & 0o777 == 0o755

    with pytest.raises(build.BundleError, match=r"has sha256 .* but the role pins 0{64}; refusing it"):
        build._binary_from_wheel("tool", {**pin, "sha256": "0" * 64}, tmp_path / "other")
    assert not (tmp_path / "other/files/tool/1.2/tool").exists()


def test_a_binary_pin_without_its_wheel_is_refused(tmp_path):
    (tmp_path / "r/vars").mkdir(parents=True)
    (tmp_path / "r/vars/Debian.yml").write_text(
        "r_binaries:\n  tool:\n    version: '1'\n    sha256: " + "a" * 64 + "\n"
    )
    with pytest.raises(build.BundleError, match=r"r_binaries\.tool lacks pypi_name, pypi_platform"):
        build.declared_binaries(tmp_path)
