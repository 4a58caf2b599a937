"""Engine images for air-gapped sites, beside the package bundle.

On the connected machine that builds the bundle, ``ironserve bundle images`` copies each image the inference stage
can deploy (ironserve/engines.py's pinned ones, or those named) from its registry with skopeo (Debian's package)
into ``images/`` as a docker-archive, the format ``docker load`` reads. The copy is made by the digest the registry
names for the tag at that moment, so the archive holds exactly that manifest; ``images/images.json`` records, per
image, the archive's file name, the registry digest, the archive's sha256 and size, and the image ID (the digest of
the image's config, which ``docker load`` keeps: a loaded archive has no registry digest). The inference role reads
that index from the bundle's URL (``inference_image_archive_url``), downloads the archive checked against its
sha256, loads it and checks the loaded image's ID before anything runs it: a host never needs a registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
from pathlib import Path

from ironserve.commands import run_step

IMAGES_DIR = "images"
INDEX = "images.json"
CHUNK = 4 * 1024 * 1024
# The hosts' platform, whatever the connected machine's: a multi-arch tag resolves to this one's image.
PLATFORM = ("--override-os", "linux", "--override-arch", "amd64")


def _dcgm_exporter_image() -> str:
    """NVIDIA's DCGM exporter, for the monitoring stage (not in Debian): the monitoring role's default is the pin."""
    import yaml

    from ironserve import paths

    defaults = paths.REPO_ROOT / "roles" / "monitoring" / "defaults" / "main.yml"
    return str(yaml.safe_load(defaults.read_text())["monitoring_dcgm_exporter_image"])


DCGM_EXPORTER_IMAGE = _dcgm_exporter_image()


def default_images() -> list[str]:
    """What 'ironserve bundle images' copies when no image is named: every engine's pinned image and the exporter."""
    from ironserve import engines

    return sorted({e.image for e in engines.ENGINES.values()} | {DCGM_EXPORTER_IMAGE})


class ImageBundleError(RuntimeError):
    """An image could not be put in the bundle; the message names the image and the step."""


def archive_name(image: str) -> str:
    """The archive's file name for an image reference (stable, one file per reference)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image) + ".tar"


def sha256_file(path: Path) -> str:
    """A file's sha256, hex, read in chunks (archives and disk images are gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def image_id(archive: Path) -> str:
    """The image ID of a docker-archive's one image: its config's digest, which ``manifest.json`` names (``<hex>.json``
    as skopeo writes it, ``blobs/sha256/<hex>`` as docker save does), checked against the config's own bytes."""
    try:
        with tarfile.open(archive) as tar:
            [entry] = json.load(tar.extractfile("manifest.json"))
            config = entry["Config"]
            expected = Path(config).name.removesuffix(".json")
            actual = hashlib.sha256(tar.extractfile(config).read()).hexdigest()
    except (OSError, tarfile.TarError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ImageBundleError(f"{archive.name} is not a docker-archive of one image: {exc}") from exc
    if actual != expected:
        raise ImageBundleError(f"{archive.name}: its config's sha256 is {actual}, manifest.json names {expected}")
    return f"sha256:{actual}"


def read_index(bundle_folder: Path) -> dict[str, dict]:
    index = bundle_folder / IMAGES_DIR / INDEX
    return json.loads(index.read_text()) if index.exists() else {}


def add(images: list[str], bundle_folder: Path, skopeo: str = "skopeo", log=print) -> dict[str, dict]:
    """Copy each of ``images`` into the bundle (an archive already there at the registry's current digest is kept);
    return the index."""
    if shutil.which(skopeo) is None:
        raise ImageBundleError(
            f"{skopeo} is not installed: install Debian's skopeo on this connected machine (apt install skopeo)"
        )
    folder = bundle_folder / IMAGES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    index = read_index(bundle_folder)
    for image in images:
        if "@" in image or ":" not in image.rsplit("/", 1)[-1]:
            raise ImageBundleError(
                f"{image}: name the image by tag (name:tag); the bundle records the digest the tag had when copied, "
                "and a loaded image answers to its tag only"
            )
        digest = run_step(
            f"read the digest of {image}",
            [skopeo, *PLATFORM, "inspect", "--format", "{{.Digest}}", f"docker://{image}"],
            ImageBundleError,
        ).stdout.strip()
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ImageBundleError(f"{image}: the registry named no digest (skopeo inspect said {digest!r})")
        target = folder / archive_name(image)
        entry = index.get(image, {})
        kept = entry.get("digest") == digest and "image_id" in entry
        if kept and target.exists() and sha256_file(target) == entry.get("sha256"):
            log(f"{image}: kept ({digest})")
            continue
        partial = target.with_suffix(".tar.partial")
        partial.unlink(missing_ok=True)
        run_step(
            f"copy {image}",
            [
                skopeo,
                *PLATFORM,
                "copy",
                "--retry-times",
                "3",
                f"docker://{_by_digest(image, digest)}",
                f"docker-archive:{partial}:{image}",
            ],
            ImageBundleError,
        )
        identity = image_id(partial)
        os.replace(partial, target)
        index[image] = {
            "file": target.name,
            "digest": digest,
            "image_id": identity,
            "sha256": sha256_file(target),
            "size": target.stat().st_size,
        }
        log(f"{image}: {digest}, {index[image]['size'] / 1024**3:.1f} GiB")
        (folder / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    (folder / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return index


def _by_digest(image: str, digest: str) -> str:
    """``name:tag`` -> ``name@<digest>``: the tag's manifest when it was read, fixed for the copy."""
    name, _, _ = image.rpartition(":")
    return f"{name}@{digest}"
