"""Machine layers: a lab machine's disk after a named set of stages or roles converged, kept as a read-only
qcow2 layer.

A scenario whose machines declare ``layer: NAME`` boots them from that layer and converges only what it tests.
A layer is keyed by a content hash of everything that shaped it: its parent (the base image or another layer),
the stage playbooks, every file of every role they apply and of every role the layer names itself (found by
reading the playbooks and the roles' task files, so a role a role includes counts too), the project's modules,
module_utils and filters, the lab's group variables and the layer's own variables, and the bundle it installed
from. Change any of it and that layer, and each layer built on it, is built again; the others are kept. Layers
live in the state folder beside the base image (``layers/NAME-KEY/``); ``ironserve lab prune`` removes stale ones
and keeps the cache under a cap.

Which layers exist is data (``molecule/shared/layers.yml``): the bench declares them, each with the reason.
A layer never replaces a role's own test: the scenario that owns a role converges it from nothing and checks
its idempotence in every full run (docs/bench.md lists the owners).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ironserve import paths
from ironserve.lab.spec import SpecError

DECLARATIONS = paths.REPO_ROOT / "molecule" / "shared" / "layers.yml"
# Shared by every role: a change in any of them can change what any stage does.
SHARED_CODE = ("library", "module_utils", "filter_plugins")
LAYER_FORMAT_VERSION = 1  # bump when build() changes what a layer contains
POWEROFF_TIMEOUT = 180.0
# What makes one booted machine itself: removed before the disk becomes a layer, made again at each boot.
IDENTITY_RESET = (
    "set -e; rm -f /etc/ssh/ssh_host_* /root/.ssh/authorized_keys /var/lib/dbus/machine-id; "
    ": > /etc/machine-id; sed -i '/^127.0.1.1 /d' /etc/hosts; apt-get clean; "
    "journalctl --rotate >/dev/null 2>&1 || true; journalctl --vacuum-time=1s >/dev/null 2>&1 || true; sync; "
    # In the same session: root's key is gone, so no later login would get in to power it off.
    "nohup sh -c 'sleep 1; systemctl poweroff' >/dev/null 2>&1 &"
)


class LayerError(RuntimeError):
    """A layer could not be built; the message says which layer, which step and why."""


@dataclass(frozen=True)
class Layer:
    name: str
    stages: tuple[str, ...]
    parent: str | None = None
    # Roles applied after the stages, on their own (a layer that holds one role of a stage, not the whole stage).
    roles: tuple[str, ...] = ()
    variables: dict[str, Any] = field(default_factory=dict)
    why: str = ""
    # A shell command run on the machine before the stages (part of the key).
    prepare: str = ""


@dataclass(frozen=True)
class LayerImage:
    folder: Path

    @property
    def disk(self) -> Path:
        return self.folder / "disk.qcow2"

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.json"


def declared(path: Path = DECLARATIONS) -> dict[str, Layer]:
    """The layers a bench declares:
    ``{layers: {NAME: {stages: [...], roles: [...], parent: NAME, vars: {...}, why: ...}}}``."""
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    layers: dict[str, Layer] = {}
    for name, entry in ((data or {}).get("layers") or {}).items():
        entry = entry if isinstance(entry, dict) else {}
        stages, roles = entry.get("stages", []), entry.get("roles", [])
        if not isinstance(stages, list) or not isinstance(roles, list) or not (stages or roles):
            raise SpecError(
                f"layer {name} in {path}: 'stages' or 'roles' must be a non-empty list of stage or role names"
            )
        layers[name] = Layer(
            name=name,
            stages=tuple(stages),
            roles=tuple(roles),
            parent=entry.get("parent"),
            variables=dict(entry.get("vars") or {}),
            why=str(entry.get("why", "")),
        )
    for layer in layers.values():
        if layer.parent is not None and layer.parent not in layers:
            raise SpecError(f"layer {layer.name}: parent {layer.parent!r} is not declared in {path}")
    return layers


def lookup(name: str, layers: dict[str, Layer]) -> Layer:
    if name not in layers:
        known = ", ".join(sorted(layers)) or "none"
        raise SpecError(f"layer {name!r} is not declared in {DECLARATIONS}; declared layers: {known}")
    return layers[name]


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in {".yml", ".yaml"} and p.is_file())


def _role_names_in(node: Any) -> Iterable[str]:
    """Role names a playbook or task file applies: plays' ``roles:`` and include_role/import_role tasks."""
    if isinstance(node, list):
        for item in node:
            yield from _role_names_in(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "roles" and isinstance(value, list):
                for role in value:
                    name = role.get("role") or role.get("name") if isinstance(role, dict) else role
                    if isinstance(name, str):
                        yield name
            elif key.rsplit(".", 1)[-1] in {"include_role", "import_role"} and isinstance(value, dict):
                if isinstance(value.get("name"), str):
                    yield value["name"]
            else:
                yield from _role_names_in(value)


def _role_dependencies(role_dir: Path) -> list[str]:
    names: list[str] = []
    meta = role_dir / "meta" / "main.yml"
    if meta.exists():
        for dep in (yaml.safe_load(meta.read_text()) or {}).get("dependencies") or []:
            name = dep.get("role") if isinstance(dep, dict) else dep
            if isinstance(name, str):
                names.append(name)
    for path in _yaml_files(role_dir / "tasks") + _yaml_files(role_dir / "handlers"):
        names += list(_role_names_in(yaml.safe_load(path.read_text())))
    return names


def stage_roles(stages: Iterable[str], repo: Path = paths.REPO_ROOT) -> list[str]:
    """Every role the stages' playbooks apply, with the roles those roles include, sorted."""
    pending: list[str] = []
    for stage in stages:
        playbook = repo / "playbooks" / f"{stage}.yml"
        if not playbook.exists():
            raise SpecError(f"stage {stage!r} has no playbook {playbook}")
        pending += list(_role_names_in(yaml.safe_load(playbook.read_text())))
    return _with_included(pending, repo)


def applied_roles(layer: Layer, repo: Path = paths.REPO_ROOT) -> list[str]:
    """Every role a layer's own build applies (its stages' and its named roles, with what they include), sorted."""
    for name in layer.roles:
        if not (repo / "roles" / name).is_dir():
            raise SpecError(f"layer {layer.name}: role {name!r} has no folder {repo / 'roles' / name}")
    return sorted(set(stage_roles(layer.stages, repo)) | set(_with_included(list(layer.roles), repo)))


def contained_roles(name: str, layers: dict[str, Layer], repo: Path = paths.REPO_ROOT) -> list[str]:
    """Every role a machine booted from layer ``name`` has converged: its own build's and its parents'."""
    layer = layers[name]
    parents = contained_roles(layer.parent, layers, repo) if layer.parent else []
    return sorted(set(applied_roles(layer, repo)) | set(parents))


def _with_included(pending: list[str], repo: Path) -> list[str]:
    found: set[str] = set()
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        role_dir = repo / "roles" / name
        if role_dir.is_dir():
            pending += _role_dependencies(role_dir)
    return sorted(found)


def _digest_files(digest: Any, root: Path, folders: Iterable[Path]) -> None:
    for folder in folders:
        files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
        for path in files:
            if path.name == "README.md" or "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")


def layer_key(
    layer: Layer,
    parent_key: str,
    bundle_identity: str,
    repo: Path = paths.REPO_ROOT,
    group_vars: Path | None = None,
) -> str:
    """The content hash of everything that shapes ``layer`` (see the module's docstring)."""
    digest = hashlib.sha256()
    recipe = {
        "format": LAYER_FORMAT_VERSION,
        "parent": parent_key,
        "stages": list(layer.stages),
        "vars": layer.variables,
        "bundle": bundle_identity,
        **({"prepare": layer.prepare} if layer.prepare else {}),
        **({"roles": list(layer.roles)} if layer.roles else {}),
    }
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    roles = applied_roles(layer, repo)
    _digest_files(
        digest,
        repo,
        [repo / "playbooks" / f"{stage}.yml" for stage in layer.stages]
        + [repo / "roles" / name for name in roles if (repo / "roles" / name).is_dir()]
        + [repo / name for name in SHARED_CODE if (repo / name).exists()],
    )
    from ironserve.lab.lab import LAB_GROUP_VARS

    group_vars = group_vars or LAB_GROUP_VARS
    if group_vars.exists():
        digest.update(group_vars.read_bytes())
    return digest.hexdigest()[:16]


def keys(layers: dict[str, Layer], base_key: str, bundle_identity: str, repo: Path = paths.REPO_ROOT) -> dict[str, str]:
    """Every declared layer's key; a layer's key includes its parent's, so a change reaches its children."""
    result: dict[str, str] = {}

    def key_of(name: str) -> str:
        if name not in result:
            layer = layers[name]
            parent = key_of(layer.parent) if layer.parent else base_key
            result[name] = layer_key(layer, parent, bundle_identity, repo)
        return result[name]

    for name in layers:
        key_of(name)
    return result


def bundle_identity(bundle: Any) -> str:
    """What of the bundle shapes a layer: the request it was built for and the key that signs it."""
    if bundle is None:
        return "no-bundle"
    manifest = json.loads(Path(bundle.manifest).read_text())
    return hashlib.sha256((manifest.get("request_key", "") + Path(bundle.public_key).read_text()).encode()).hexdigest()[
        :16
    ]


def image_for(name: str, key: str) -> LayerImage:
    return LayerImage(paths.layers_dir() / f"{name}-{key}")


def find_by_key(key: str) -> LayerImage | None:
    """A usable cached layer with this content key, whatever its name (the key holds no name)."""
    for folder in sorted(paths.layers_dir().glob(f"*-{key}")):
        image = LayerImage(folder)
        if folder.is_dir() and _usable(image):
            image.manifest.touch()
            return image
    return None


def _usable(image: LayerImage) -> bool:
    if not image.manifest.exists() or not image.disk.exists():
        return False
    backing = json.loads(image.manifest.read_text()).get("backing")
    return bool(backing) and Path(backing).exists()


def ensure(name: str, bundle: Any, base_disk: Path, base_key: str, log=print) -> LayerImage:
    """The layer ``name``, built first (with its parents) if the cache has none for the current key."""
    layers = declared()
    layer = lookup(name, layers)
    key = keys(layers, base_key, bundle_identity(bundle))[name]
    parent_disk = (
        ensure(layer.parent, bundle, base_disk, base_key, log=log).disk if layer.parent is not None else base_disk
    )
    return ensure_layer(layer, key, parent_disk, bundle, log=log)


def ensure_layer(layer: Layer, key: str, parent_disk: Path, bundle: Any, log=print) -> LayerImage:
    """``layer`` under ``key``: the cached one, else built on ``parent_disk`` (one builder at a time per name)."""
    with paths.cache_lock(f"layer-{layer.name}"):
        image = image_for(layer.name, key)
        if _usable(image):
            image.manifest.touch()  # last use, for the cache cap
            log(f"layer {layer.name} ({key}): cached")
            return image
        return _build(layer, key, image, parent_disk, bundle, log)


def _ssh(state: dict, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    from ironserve.lab import vm

    port = state["machines"][0]["ssh_port"]
    return subprocess.run(
        vm.ssh_argv(port, Path(state["ssh_key"]), command), capture_output=True, text=True, timeout=timeout, check=False
    )


def _roles_playbook(layer: Layer, folder: Path) -> Path:
    """A playbook applying the layer's named roles, as a scenario's prepare applies one role."""
    playbook = folder / "layer-roles.yml"
    play = {
        "name": f"Layer {layer.name} - roles {', '.join(layer.roles)}",
        "hosts": "all",
        "become": True,
        "gather_facts": True,
        "roles": [{"role": name} for name in layer.roles],
    }
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    return playbook


def _converge(playbook: Path, inventory: Path, log_file: Path, what: str, layer: Layer) -> None:
    from ironserve.paths import ansible_env

    result = subprocess.run(
        [paths.tool("ansible-playbook"), "-i", str(inventory), str(playbook)],
        cwd=paths.REPO_ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    log_file.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise LayerError(f"layer {layer.name}: {what} failed (exit {result.returncode}):\n{result.stdout[-3000:]}")


def _build(layer: Layer, key: str, image: LayerImage, parent_disk: Path, bundle: Any, log) -> LayerImage:
    from ironserve.lab import lab, vm
    from ironserve.lab.spec import lab_from_dict

    started = time.monotonic()
    what = "; ".join(
        f"{kind} {', '.join(names)}" for kind, names in (("stages", layer.stages), ("roles", layer.roles)) if names
    )
    log(f"layer {layer.name} ({key}): building from {parent_disk.parent.name}: {what}")
    spec = lab_from_dict(
        {"machines": [{"name": f"layer-{layer.name}"[:31], "cpus": 2, "memory_mb": 1536}]},
        name=f"layer-{layer.name}"[:31],
    )
    work = image.folder.with_name(image.folder.name + ".building")
    try:
        # Inside the try: a machine that never answers (seen: a guest kernel panic) must be stopped too.
        state = lab.up(spec, bundle, log=log, backing=parent_disk)
        inventory = lab.stage_inventory(Path(state["folder"]) / "inventory", state["machines"], layer.variables)
        if layer.prepare:
            prepared = _ssh(state, layer.prepare)
            if prepared.returncode != 0:
                raise LayerError(f"layer {layer.name}: its prepare command failed: {prepared.stderr[-1000:]}")
        folder = Path(state["folder"])
        for stage in layer.stages:
            _converge(
                paths.REPO_ROOT / "playbooks" / f"{stage}.yml",
                inventory,
                folder / f"{stage}.log",
                f"stage {stage}",
                layer,
            )
        if layer.roles:
            _converge(_roles_playbook(layer, folder), inventory, folder / "roles.log", "its roles", layer)
        reset = _ssh(state, IDENTITY_RESET)
        if reset.returncode != 0:
            raise LayerError(f"layer {layer.name}: resetting the machine's identity failed: {reset.stderr[-1000:]}")
        machine = state["machines"][0]
        deadline = time.monotonic() + POWEROFF_TIMEOUT
        while vm.is_our_qemu(machine["pid"], Path(machine["folder"])):
            if time.monotonic() > deadline:
                raise LayerError(f"layer {layer.name}: the machine did not power off within {POWEROFF_TIMEOUT:.0f} s")
            time.sleep(1)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        shutil.move(str(Path(machine["folder"]) / "root.qcow2"), work / "disk.qcow2")
        (work / "disk.qcow2").chmod(0o444)
        manifest = {
            "name": layer.name,
            "key": key,
            "stages": list(layer.stages),
            "roles": applied_roles(layer),
            "parent": layer.parent,
            "backing": str(parent_disk),
            "build_seconds": round(time.monotonic() - started, 1),
            "bytes": (work / "disk.qcow2").stat().st_size,
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(image.folder, ignore_errors=True)
        work.rename(image.folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        lab.down(spec.name, log=lambda _message: None)
    log(f"layer {layer.name} ({key}): built in {manifest['build_seconds']} s")
    return image


def current_keys() -> dict[str, str]:
    """The key each declared layer has now, from the current base image recipe and the bundle as it stands."""
    from ironserve.bundle.build import Bundle
    from ironserve.lab import image as base_image

    bundle = Bundle(paths.bundle_dir())
    identity = bundle_identity(bundle) if bundle.manifest.exists() and bundle.public_key.exists() else "no-bundle"
    base_key = f"debian-{base_image.SUITE}-{base_image.image_key()}"
    return keys(declared(), base_key, identity)


def prune_images(log=print) -> list[Path]:
    """Remove base images of other recipes than the current one (and half-built ones)."""
    from ironserve.lab import image as base_image

    folder = paths.images_dir()
    current = f"debian-{base_image.SUITE}-{base_image.image_key()}"
    removed = [p for p in sorted(folder.iterdir()) if p.name != current] if folder.exists() else []
    for entry in removed:
        shutil.rmtree(entry, ignore_errors=True)
        log(f"pruned {entry}")
    return removed


def prune(current: dict[str, str], cap_bytes: int, log=print) -> list[Path]:
    """Remove layers whose key is no longer current (and half-built ones), then the least recently used until
    the layers fit under ``cap_bytes``; a layer whose parent went is removed with it. Returns what went."""
    folder = paths.layers_dir()
    removed: list[Path] = []
    if not folder.exists():
        return removed
    entries = sorted(folder.iterdir())
    for entry in entries:
        name, _, key = entry.name.rpartition("-")
        if entry.name.endswith(".building") or current.get(name) != key or not _usable(LayerImage(entry)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    kept = [e for e in entries if e.exists()]

    def size(entry: Path) -> int:
        return sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())

    kept.sort(key=lambda e: (e / "manifest.json").stat().st_mtime)
    while kept and sum(size(e) for e in kept) > cap_bytes:
        oldest = kept.pop(0)
        shutil.rmtree(oldest, ignore_errors=True)
        removed.append(oldest)
    # A layer whose parent's disk went cannot boot.
    for entry in [e for e in kept if not _usable(LayerImage(e))]:
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    for entry in removed:
        log(f"pruned {entry}")
    return removed
