"""The initramfs is rebuilt only when a file it must hold is newer than it: one rebuild per host per run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ironserve_target import initramfs
from lab_ansible import ansible_module

# Stands in for initramfs-tools' update-initramfs where the module depends on it: -u -k VERSION rewrites that
# kernel's image and fails, as the real one does, when the version has none.
FAKE_UPDATE_INITRAMFS = """\
#!/bin/sh
set -eu
[ "$1" = -u ] && [ "$2" = -k ] || { echo "usage: update-initramfs -u -k VERSION" >&2; exit 2; }
image="$BOOT_DIR/initrd.img-$3"
[ -e "$image" ] || { echo "update-initramfs: $image does not exist. Cannot update." >&2; exit 1; }
echo rebuilt > "$image"
echo "$3" >> "$BOOT_DIR/rebuilds"
"""


def _age(path: Path, seconds_ago: float) -> None:
    when = path.stat().st_mtime - seconds_ago
    os.utime(path, (when, when))


@pytest.fixture
def host(tmp_path, monkeypatch):
    boot = tmp_path / "boot"
    boot.mkdir()
    for version in ("6.12.9+deb13-amd64", "6.12.118+deb13-amd64"):
        (boot / f"initrd.img-{version}").write_text("old\n")
        (boot / f"vmlinuz-{version}").write_text("")
    (boot / "initrd.img-6.12.200+deb13-amd64.bak").write_text("")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "update-initramfs").write_text(FAKE_UPDATE_INITRAMFS)
    (tools / "update-initramfs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    monkeypatch.setenv("BOOT_DIR", str(boot))
    conf = tmp_path / "blacklist.conf"
    conf.write_text("blacklist nouveau\n")
    return boot, conf


def test_the_newest_kernel_is_the_one_update_initramfs_refreshes(host):
    boot, _ = host
    assert initramfs.newest_initrd(str(boot)) == (
        "6.12.118+deb13-amd64",
        str(boot / "initrd.img-6.12.118+deb13-amd64"),
    )
    assert initramfs.newest_initrd(str(boot / "absent")) is None


def test_only_files_written_after_the_initramfs_make_it_stale(host):
    boot, conf = host
    initrd = boot / "initrd.img-6.12.118+deb13-amd64"
    _age(initrd, 60)
    assert initramfs.stale_inputs(str(initrd), [str(conf), str(boot / "missing.conf")]) == [str(conf)]
    _age(conf, 120)
    assert initramfs.stale_inputs(str(initrd), [str(conf)]) == []


def _requests_module(boot: Path, requests: Path, *args: str, check: bool = False) -> dict:
    """ironserve_initramfs on this machine with these boot and requests paths and module arguments (key=value each)."""
    local = ("-c", "local", "-e", "ansible_python_interpreter=python3", *(["--check"] if check else []))
    module_args = " ".join((f"boot_dir={boot}", f"requests_file={requests}", *args))
    return ansible_module("localhost,", "localhost", "ironserve_initramfs", module_args, *local, timeout=120)[
        "localhost"
    ]


def _module(boot: Path, conf: Path, check: bool = False) -> dict:
    # Requests in the test's own folder, never this machine's /var/lib/ironserve.
    return _requests_module(boot, boot.parent / "requests", f"must_contain={conf}", check=check)


def test_the_module_rebuilds_once_then_finds_it_current(host):
    boot, conf = host
    _age(boot / "initrd.img-6.12.118+deb13-amd64", 60)
    checked = _module(boot, conf, check=True)
    assert checked["changed"] is True
    assert checked["stale"] == [str(conf)]
    assert not (boot / "rebuilds").exists()
    first = _module(boot, conf)
    assert first["changed"] is True
    assert first["kernel"] == "6.12.118+deb13-amd64"
    second = _module(boot, conf)
    assert second["changed"] is False
    assert second["stale"] == []
    assert (boot / "rebuilds").read_text() == "6.12.118+deb13-amd64\n"


def test_a_configuration_older_than_the_initramfs_is_not_a_rebuild(host):
    boot, conf = host
    # What a package install leaves: the role wrote its file, then the package's trigger rebuilt the initramfs.
    _age(conf, 60)
    assert _module(boot, conf)["changed"] is False
    assert not (boot / "rebuilds").exists()


def test_a_host_without_an_initramfs_is_told_so(host, tmp_path):
    _, conf = host
    empty = tmp_path / "empty-boot"
    empty.mkdir()
    with pytest.raises(AssertionError) as failed:
        _module(empty, conf)
    assert f"No initramfs in {empty}" in str(failed.value)


def test_the_deferral_writes_the_recorder_and_its_apt_configuration_once(tmp_path):
    deferral = tmp_path / "deferral"
    requests = tmp_path / "state" / "requests"
    args = (f"state=deferral deferral_dir={deferral}",)
    first = _requests_module(tmp_path, requests, *args)
    assert first["changed"] is True
    assert first["apt_config"] == str(deferral / "apt.conf")
    recorder = deferral / "bin" / "update-initramfs"
    assert recorder.stat().st_mode & 0o777 == 0o755
    assert f'DPkg::Path "{deferral}/bin:/usr/sbin:/usr/bin:/sbin:/bin";' in (deferral / "apt.conf").read_text()
    again = _requests_module(tmp_path, requests, *args)
    assert again["changed"] is False
    assert again["requested_by"] == []
    # A run that stopped between a deferred install and its rebuild left a request: the next run's deferral says so.
    requests.parent.mkdir(parents=True)
    requests.write_text("mdadm\n")
    assert _requests_module(tmp_path, requests, *args)["requested_by"] == ["mdadm"]
    recorder.chmod(0o644)
    assert _requests_module(tmp_path, requests, *args)["changed"] is True
    assert recorder.stat().st_mode & 0o777 == 0o755


def test_the_deferral_in_check_mode_writes_nothing(tmp_path):
    deferral = tmp_path / "deferral"
    result = _requests_module(tmp_path, tmp_path / "requests", f"state=deferral deferral_dir={deferral}", check=True)
    assert result["changed"] is True
    assert not deferral.exists()


def _write_recorder(tmp_path: Path) -> tuple[Path, Path, Path]:
    requests = tmp_path / "state" / "requests"
    real = tmp_path / "real-update-initramfs"
    real.write_text('#!/bin/sh\necho "real: $*"\n')
    real.chmod(0o755)
    for path, (content, mode) in initramfs.deferral_files(str(tmp_path / "d"), str(requests), str(real)).items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(content)
        Path(path).chmod(mode)
    return tmp_path / "d" / "bin" / "update-initramfs", requests, real


def test_the_recorder_records_a_packages_update_and_passes_everything_else_on(tmp_path):
    recorder, requests, _ = _write_recorder(tmp_path)
    env = {"PATH": "/usr/bin:/bin"}
    # What mdadm's postinst runs, then initramfs-tools' trigger (dpkg empties DPKG_MAINTSCRIPT_PACKAGE for it).
    for package in ("mdadm", "xfsprogs", "mdadm", ""):
        done = subprocess.run(
            [recorder, "-u"],
            env={**env, "DPKG_MAINTSCRIPT_PACKAGE": package},
            capture_output=True,
            text=True,
            check=True,
        )
        assert "deferred by ironserve" in done.stdout
    assert initramfs.requested_by(str(requests)) == ["mdadm", "xfsprogs", "initramfs-tools"]
    # A kernel's install creates its initramfs (-c), and an explicit version is the caller's choice: both real.
    for args in (["-c", "-k", "6.12.118+deb13-amd64"], ["-u", "-k", "all"]):
        done = subprocess.run([recorder, *args], env=env, capture_output=True, text=True, check=True)
        assert done.stdout == f"real: {' '.join(args)}\n"
    assert initramfs.requested_by(str(requests)) == ["mdadm", "xfsprogs", "initramfs-tools"]


def test_recorded_requests_make_one_rebuild_and_are_then_cleared(host, tmp_path):
    boot, _ = host
    requests = tmp_path / "requests"
    requests.write_text("mdadm\nxfsprogs\nmdadm\n")
    checked = _requests_module(boot, requests, check=True)
    assert checked["changed"] is True
    assert checked["requested_by"] == ["mdadm", "xfsprogs"]
    assert requests.exists()
    assert not (boot / "rebuilds").exists()
    made = _requests_module(boot, requests)
    assert made["changed"] is True
    assert made["requested_by"] == ["mdadm", "xfsprogs"]
    assert not requests.exists()
    again = _requests_module(boot, requests)
    assert again["changed"] is False
    assert again["requested_by"] == []
    assert (boot / "rebuilds").read_text() == "6.12.118+deb13-amd64\n"


def test_a_host_without_an_initramfs_is_left_alone_unless_something_asked_for_one(tmp_path):
    empty = tmp_path / "empty-boot"
    empty.mkdir()
    requests = tmp_path / "requests"
    assert _requests_module(empty, requests)["changed"] is False
    requests.write_text("mdadm\n")
    with pytest.raises(AssertionError) as failed:
        _requests_module(empty, requests)
    assert f"No initramfs in {empty}" in str(failed.value)
