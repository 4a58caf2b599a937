"""Engine images in the bundle: copied by skopeo (a recording stand-in here: no registry is reachable) by the digest
the tag had, recorded with the archive's sha256, kept while the registry's digest stays."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ironserve.bundle import images

SKOPEO = """#!/usr/bin/python3
import json, os, sys
state = os.path.join(os.path.dirname(sys.argv[0]), "state.json")
digest = open(os.path.join(os.path.dirname(sys.argv[0]), "digest")).read().strip()
with open(state, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
command = next(a for a in sys.argv[1:] if not a.startswith("-") and a not in ("linux", "amd64"))
if command == "inspect":
    print(digest)
elif command == "copy":  # a docker-archive as skopeo writes one: manifest.json naming the config <hex>.json
    import hashlib, io, tarfile
    _, path, ref = sys.argv[-1].split(":", 2)
    config = json.dumps({"architecture": "amd64", "os": "linux", "source": sys.argv[-2]}).encode()
    name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": name, "RepoTags": [ref], "Layers": []}]).encode()
    with tarfile.open(path, "w") as tar:
        for member, data in ((name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
"""


@pytest.fixture
def skopeo(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "skopeo").write_text(SKOPEO)
    (folder / "skopeo").chmod(0o755)
    (folder / "digest").write_text("sha256:" + "a" * 64 + "\n")
    return folder


def _calls(skopeo: Path) -> list[list[str]]:
    state = skopeo / "state.json"
    return [json.loads(line) for line in state.read_text().splitlines()] if state.exists() else []


def test_an_image_is_copied_by_the_digest_its_tag_has_and_recorded(tmp_path, skopeo):
    bundle = tmp_path / "bundle"
    index = images.add(["vllm/vllm-openai:v0.11.0"], bundle, skopeo=str(skopeo / "skopeo"), log=lambda _: None)
    entry = index["vllm/vllm-openai:v0.11.0"]
    archive = bundle / "images" / entry["file"]
    assert entry["file"] == "vllm_vllm-openai_v0.11.0.tar"
    assert entry["digest"] == "sha256:" + "a" * 64
    assert entry["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert entry["size"] == archive.stat().st_size
    assert entry["image_id"] == images.image_id(archive)
    assert entry["image_id"].startswith("sha256:")
    copy = _calls(skopeo)[-1]
    assert copy[:4] == ["--override-os", "linux", "--override-arch", "amd64"]  # the hosts' platform
    assert copy[-2] == "docker://vllm/vllm-openai@sha256:" + "a" * 64
    assert copy[-1] == f"docker-archive:{archive.with_suffix('.tar.partial')}:vllm/vllm-openai:v0.11.0"
    assert json.loads((bundle / "images/images.json").read_text()) == index


def test_an_archive_is_kept_while_the_registry_digest_stays_and_copied_again_when_it_moves(tmp_path, skopeo):
    bundle, quiet = tmp_path / "bundle", (lambda _: None)
    images.add(["registry.example:5000/sglang:v0.5.3-cu129"], bundle, skopeo=str(skopeo / "skopeo"), log=quiet)
    copies = len([c for c in _calls(skopeo) if "copy" in c])
    images.add(["registry.example:5000/sglang:v0.5.3-cu129"], bundle, skopeo=str(skopeo / "skopeo"), log=quiet)
    assert len([c for c in _calls(skopeo) if "copy" in c]) == copies
    (skopeo / "digest").write_text("sha256:" + "b" * 64 + "\n")
    index = images.add(["registry.example:5000/sglang:v0.5.3-cu129"], bundle, skopeo=str(skopeo / "skopeo"), log=quiet)
    assert len([c for c in _calls(skopeo) if "copy" in c]) == copies + 1
    assert _calls(skopeo)[-1][-2] == "docker://registry.example:5000/sglang@sha256:" + "b" * 64
    assert index["registry.example:5000/sglang:v0.5.3-cu129"]["digest"] == "sha256:" + "b" * 64


def test_images_without_a_tag_or_without_skopeo_are_refused(tmp_path, skopeo):
    with pytest.raises(images.ImageBundleError, match="name the image by tag"):
        images.add(["vllm/vllm-openai@sha256:" + "c" * 64], tmp_path, skopeo=str(skopeo / "skopeo"))
    with pytest.raises(images.ImageBundleError, match="name the image by tag"):
        images.add(["vllm/vllm-openai"], tmp_path, skopeo=str(skopeo / "skopeo"))
    with pytest.raises(images.ImageBundleError, match="apt install skopeo"):
        images.add(["vllm/vllm-openai:v0.11.0"], tmp_path, skopeo=str(tmp_path / "no-skopeo"))


def test_an_archive_whose_config_does_not_match_its_manifest_is_refused(tmp_path):
    import io
    import tarfile

    archive = tmp_path / "forged.tar"
    with tarfile.open(archive, "w") as tar:
        for member, data in (
            ("0" * 64 + ".json", b"{}"),
            ("manifest.json", json.dumps([{"Config": "0" * 64 + ".json", "Layers": []}]).encode()),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(images.ImageBundleError, match="its config's sha256 is"):
        images.image_id(archive)
    (tmp_path / "not.tar").write_bytes(b"not a tar")
    with pytest.raises(images.ImageBundleError, match="not a docker-archive of one image"):
        images.image_id(tmp_path / "not.tar")


def test_by_default_the_bundle_carries_every_engines_pinned_image_and_the_dcgm_exporter():
    assert images.default_images() == sorted(
        ["vllm/vllm-openai:v0.11.0", "lmsysorg/sglang:v0.5.3-cu129", images.DCGM_EXPORTER_IMAGE]
    )
    assert images.DCGM_EXPORTER_IMAGE.startswith("nvcr.io/nvidia/k8s/dcgm-exporter:")
