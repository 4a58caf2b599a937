"""Weight staging: verified against the manifest, resumable, atomic, skipped when already verified."""

from __future__ import annotations

import datetime
import functools
import hashlib
import http.server
import os
import threading
from pathlib import Path

import pytest
from ironserve_target import weights
from lab_ansible import ansible_module

FILES = {
    "config.json": b'{"model_type": "qwen2"}\n',
    "model-00001-of-00002.safetensors": os.urandom(300_000),
    "model-00002-of-00002.safetensors": os.urandom(200_000),
    "tokenizer/tokenizer.json": b"{}\n",
}


def _source(folder: Path, files: dict[str, bytes] = FILES) -> str:
    lines = []
    for relative, content in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(content)
        lines.append(f"{hashlib.sha256(content).hexdigest()}  {relative}")
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return (folder / "SHA256SUMS").read_text()


def test_stage_verify_switch_and_skip(tmp_path):
    source, dest = tmp_path / "src", tmp_path / "models"
    manifest = weights.parse_manifest(_source(source))
    first = weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=False)
    assert first["changed"] is True
    assert first["switched"] is True
    assert sorted(first["fetched_files"]) == sorted(FILES)
    assert first["fetched_bytes"] == sum(len(c) for c in FILES.values())
    assert os.readlink(dest / "m/current") == "rev1"
    assert (dest / "m/current/model-00001-of-00002.safetensors").read_bytes() == FILES[
        "model-00001-of-00002.safetensors"
    ]
    assert not (dest / "m/rev1.staging").exists()

    again = weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=False)
    assert (again["changed"], again["fetched_files"], again["kept_files"]) == (False, [], len(FILES))


def test_check_mode_writes_nothing(tmp_path):
    source, dest = tmp_path / "src", tmp_path / "models"
    manifest = weights.parse_manifest(_source(source))
    planned = weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=True)
    assert (planned["changed"], planned["switched"]) == (True, True)
    assert sorted(planned["fetched_files"]) == sorted(FILES)
    assert not dest.exists()


def test_a_corrupted_file_is_refused_and_current_stays(tmp_path):
    source, dest = tmp_path / "src", tmp_path / "models"
    weights.stage(str(source), str(dest), "m", "rev1", weights.parse_manifest(_source(source)), check_mode=False)
    newer = dict(FILES, **{"model-00002-of-00002.safetensors": os.urandom(200_000)})
    manifest = weights.parse_manifest(_source(tmp_path / "src2", newer))
    (tmp_path / "src2/model-00002-of-00002.safetensors").write_bytes(b"bit rot" + os.urandom(100))
    with pytest.raises(weights.StagingError) as refused:
        weights.stage(str(tmp_path / "src2"), str(dest), "m", "rev2", manifest, check_mode=False)
    assert str(refused.value).startswith("model-00002-of-00002.safetensors: sha256 ")
    assert "does not match the manifest's" in str(refused.value)
    assert os.readlink(dest / "m/current") == "rev1"
    assert not (dest / "m/rev2").exists()
    assert not list((dest / "m/rev2.staging").rglob("*.partial"))


def test_a_new_revision_switches_current_and_keeps_the_old(tmp_path):
    dest = tmp_path / "models"
    weights.stage(str(tmp_path / "a"), str(dest), "m", "rev1", weights.parse_manifest(_source(tmp_path / "a")), False)
    newer = dict(FILES, **{"config.json": b'{"model_type": "qwen2", "v": 2}\n'})
    result = weights.stage(
        str(tmp_path / "b"), str(dest), "m", "rev2", weights.parse_manifest(_source(tmp_path / "b", newer)), False
    )
    assert result["switched"] is True
    assert os.readlink(dest / "m/current") == "rev2"
    assert (dest / "m/rev1/config.json").read_bytes() == FILES["config.json"]


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static server that honours 'Range: bytes=N-' as the bundle's production web server does."""

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        requested = self.headers.get("Range")
        if not requested or not path.is_file():
            return super().do_GET()
        start = int(requested.removeprefix("bytes=").rstrip("-"))
        data = path.read_bytes()
        if start >= len(data):
            self.send_response(416)
            self.end_headers()
            return None
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])
        return None


@pytest.fixture
def http_source(tmp_path):
    folder = tmp_path / "served"
    manifest = _source(folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", manifest
    server.shutdown()
    server.server_close()


def test_http_source_resumes_a_partial_file(tmp_path, http_source):
    url, manifest_text = http_source
    dest = tmp_path / "models"
    big = "model-00001-of-00002.safetensors"
    partial = dest / "m/rev1.staging" / (big + ".partial")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(FILES[big][:120_000])  # an interrupted earlier run
    result = weights.stage(url, str(dest), "m", "rev1", weights.parse_manifest(manifest_text), False)
    assert result["fetched_bytes"] == sum(len(c) for c in FILES.values()) - 120_000
    assert (dest / "m/current" / big).read_bytes() == FILES[big]
    assert weights.read_source_text(url, "SHA256SUMS") == manifest_text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "lists no file"),
        ("abc  x\n", "is not '<sha256>  <path>'"),
        (f"{'0' * 64}  ../etc/passwd\n", "outside"),
        (f"{'0' * 64}  /etc/passwd\n", "outside"),
    ],
)
def test_manifests_that_cannot_be_trusted_are_refused(text, message):
    with pytest.raises(weights.StagingError, match=None) as refused:
        weights.parse_manifest(text)
    assert message in str(refused.value)


def test_the_module_through_ansible(tmp_path):
    source = tmp_path / "src"
    _source(source)
    args = f"source={source} dest={tmp_path / 'models'} name=m revision=r1"
    options = ("-c", "local", "-e", "ansible_python_interpreter=python3")
    for expected_change in (True, False):
        result = ansible_module("localhost,", "localhost", "ironserve_weights", args, *options, timeout=120)
        assert result["localhost"]["changed"] is expected_change
    assert os.readlink(tmp_path / "models/m/current") == "r1"


def test_s3_requests_are_signed_as_aws_documents_it():
    # The worked example of AWS's "Signature Version 4 - GET Object" page (Range header signed too).
    headers = weights.sigv4_headers(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {"Range": "bytes=0-9"},
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        now=datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC),
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert headers["x-amz-date"] == "20130524T000000Z"


def test_an_s3_source_needs_its_keys(tmp_path):
    with pytest.raises(weights.StagingError, match="cannot read the S3 keys from"):
        weights.S3("http://127.0.0.1:8333", str(tmp_path / "missing.json"))
    with pytest.raises(weights.StagingError, match="is an S3 source"):
        weights.read_source_text("s3://models/x", "SHA256SUMS")


def test_every_byte_is_read_once_and_an_interrupted_runs_verified_files_are_kept_unread(tmp_path, monkeypatch):
    source, dest = tmp_path / "src", tmp_path / "models"
    manifest = weights.parse_manifest(_source(source))
    big = "model-00001-of-00002.safetensors"
    good = FILES[big]
    (source / big).write_bytes(os.urandom(len(good)))  # the source is damaged for the first run
    monkeypatch.setattr(weights, "sha256_of", lambda path: pytest.fail(f"{path} was read again to hash it"))
    with pytest.raises(weights.StagingError, match=f"{big}: sha256 .* does not match"):
        weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=False)
    staging = dest / "m/rev1.staging"
    assert sorted(p.name for p in staging.rglob("*") if p.is_file()) == sorted(
        [".ironserve-progress", "config.json", "model-00002-of-00002.safetensors", "tokenizer.json"]
    )
    (source / big).write_bytes(good)
    again = weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=False, parallel=2)
    assert (again["fetched_files"], again["kept_files"], again["fetched_bytes"]) == ([big], 3, len(good))
    assert again["needed_bytes"] == len(good)
    assert (dest / "m/current" / big).read_bytes() == good
    assert not (dest / "m/rev1/.ironserve-progress").exists()


def test_a_kept_file_that_changed_since_it_was_verified_is_fetched_again(tmp_path):
    source, dest = tmp_path / "src", tmp_path / "models"
    manifest = weights.parse_manifest(_source(source))
    big = "model-00001-of-00002.safetensors"
    (source / big).write_bytes(b"damaged")
    with pytest.raises(weights.StagingError):
        weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=False)
    (source / big).write_bytes(FILES[big])
    changed = dest / "m/rev1.staging/config.json"
    changed.write_bytes(b'{"model_type": "tampered"}\n')
    result = weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=False)
    assert sorted(result["fetched_files"]) == sorted([big, "config.json"])
    assert (dest / "m/current/config.json").read_bytes() == FILES["config.json"]


def test_a_revision_that_does_not_fit_is_refused_before_the_first_byte(tmp_path, monkeypatch, http_source):
    url, manifest_text = http_source
    dest = tmp_path / "models"
    total = sum(len(c) for c in FILES.values())
    monkeypatch.setattr(weights.shutil, "disk_usage", lambda path: type("usage", (), {"free": total - 1})())
    with pytest.raises(weights.StagingError) as refused:
        weights.stage(url, str(dest), "m", "rev1", weights.parse_manifest(manifest_text), False)
    assert f"m/rev1 needs {total / 1024**3:.1f} GiB more on {dest}, which has" in str(refused.value)
    assert "give the hot tier more disks" in str(refused.value)
    assert [p for p in (dest / "m/rev1.staging").rglob("*") if p.is_file()] == []


def test_a_finished_file_an_earlier_run_did_not_record_is_hashed_once_and_kept(tmp_path):
    source, dest = tmp_path / "src", tmp_path / "models"
    manifest = weights.parse_manifest(_source(source))
    staging = dest / "m/rev1.staging"
    big = "model-00001-of-00002.safetensors"
    staging.mkdir(parents=True)
    (staging / big).write_bytes(FILES[big])  # renamed into place, then the run stopped before its record
    result = weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=False)
    assert big not in result["fetched_files"]
    assert result["kept_files"] == 1
    assert (dest / "m/current" / big).read_bytes() == FILES[big]


def test_a_verified_revision_keeps_its_manifest_for_the_backups(tmp_path):
    source, dest = tmp_path / "src", tmp_path / "models"
    text = _source(source)
    manifest = weights.parse_manifest(text)
    weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=False)
    kept = (dest / "m/rev1" / weights.MANIFEST).read_text()
    assert weights.parse_manifest(kept) == manifest
    assert kept == weights.manifest_text(manifest)

    # A revision verified before manifests were kept gets one, once, without its files being read again.
    (dest / "m/rev1" / weights.MANIFEST).unlink()
    planned = weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=True)
    assert planned["changed"] is True
    assert not (dest / "m/rev1" / weights.MANIFEST).exists()
    mended = weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=False)
    assert (mended["changed"], mended["fetched_files"]) == (True, [])
    assert (dest / "m/rev1" / weights.MANIFEST).read_text() == kept
    again = weights.stage(str(source), str(dest), "m", "rev1", manifest, check_mode=False)
    assert again["changed"] is False
