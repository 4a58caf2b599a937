"""Stage model weights onto the hot tier: verified, resumable, switched in atomically.

Layout under ``dest``: ``<name>/<revision>/`` holds the files, ``<name>/current`` is a link to the
revision being served. A revision is built in ``<revision>.staging`` and renamed into place only when every
file matches the manifest's sha256; ``current`` then moves with one rename, so a server never sees a
half-copied model. A verified revision carries ``.ironserve-verified`` (the manifest's digest) and is
skipped on the next run without re-reading its files. Stdlib only: it runs on the target.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

VERIFIED = ".ironserve-verified"
CHUNK = 4 * 1024 * 1024


class StagingError(RuntimeError):
    """The weights could not be staged; the message names the file and the reason."""


def parse_manifest(text: str) -> dict[str, str]:
    """``sha256sum`` output ('<hex>  <relative path>' per line) -> {path: hex}, refusing unsafe paths."""
    manifest = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, path = line.partition("  ")
        path = path.lstrip("*")
        if len(digest) != 64 or not path:
            raise StagingError(f"manifest line {number} is not '<sha256>  <path>': {line!r}")
        if path.startswith("/") or ".." in path.split("/"):
            raise StagingError(f"manifest line {number} names {path!r}, outside the model folder")
        manifest[path] = digest.lower()
    if not manifest:
        raise StagingError("the manifest lists no file")
    return manifest


def manifest_digest(manifest: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{d}  {p}\n" for p, d in sorted(manifest.items())).encode()).hexdigest()


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_remote(source: str) -> bool:
    return source.startswith(("http://", "https://", "s3://"))


def sigv4_headers(
    method: str,
    url: str,
    headers: dict[str, str],
    access_key: str,
    secret_key: str,
    region: str = "us-east-1",
    now: datetime.datetime | None = None,
) -> dict[str, str]:
    """``headers`` plus the AWS Signature Version 4 ones for a request without a body (S3 GET/HEAD)."""
    now = now or datetime.datetime.now(datetime.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    parsed = urllib.parse.urlsplit(url)
    empty = hashlib.sha256(b"").hexdigest()
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    signed.update({"host": parsed.netloc, "x-amz-content-sha256": empty, "x-amz-date": amz_date})
    names = sorted(signed)
    query = "&".join(sorted(parsed.query.split("&"))) if parsed.query else ""
    canonical = "\n".join(
        [method, parsed.path or "/", query, "".join(f"{n}:{signed[n]}\n" for n in names), ";".join(names), empty]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return {**headers, "x-amz-content-sha256": empty, "x-amz-date": amz_date, "Authorization": authorization}


class S3:
    """An S3 endpoint (path-style addressing, as SeaweedFS and most private stores serve) with its keys."""

    def __init__(self, endpoint: str, credentials_file: str, region: str = "us-east-1"):
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        try:
            with open(credentials_file) as handle:
                keys = json.load(handle)
            self.access_key, self.secret_key = keys["access_key"], keys["secret_key"]
        except (OSError, ValueError, KeyError) as exc:
            raise StagingError(f"cannot read the S3 keys from {credentials_file}: {exc}") from exc

    def request(self, source: str, relative: str, headers: dict[str, str] | None = None) -> urllib.request.Request:
        bucket_path = source.removeprefix("s3://").strip("/") + "/" + relative
        url = self.endpoint + "/" + urllib.parse.quote(bucket_path, safe="/~")
        signed = sigv4_headers("GET", url, headers or {}, self.access_key, self.secret_key, self.region)
        return urllib.request.Request(url, headers=signed)  # noqa: S310 - the endpoint the inventory names


def _request(source: str, relative: str, s3: S3 | None, headers: dict[str, str] | None = None):
    if source.startswith("s3://"):
        if s3 is None:
            raise StagingError(f"{source} is an S3 source: give s3_endpoint and s3_credentials_file")
        return s3.request(source, relative, headers)
    return urllib.request.Request(source.rstrip("/") + "/" + relative, headers=headers or {})  # noqa: S310


def read_source_text(source: str, relative: str, s3: S3 | None = None) -> str:
    if _is_remote(source):
        with urllib.request.urlopen(_request(source, relative, s3), timeout=60) as response:  # noqa: S310
            return response.read().decode()
    with open(os.path.join(source, relative)) as handle:
        return handle.read()


def _fetch(source: str, relative: str, partial: str, s3: S3 | None = None) -> int:
    """Append the rest of ``relative`` to ``partial`` (resuming where it stops); return bytes fetched."""
    offset = os.path.getsize(partial) if os.path.exists(partial) else 0
    fetched = 0
    if _is_remote(source):
        request = _request(source, relative, s3, {"Range": f"bytes={offset}-"} if offset else None)
        try:
            response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - a URL the inventory names
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # nothing left to send: the partial file is complete
                return 0
            raise StagingError(f"{relative}: the source answered HTTP {exc.code}") from exc
        with response:
            if offset and response.status != 206:
                offset = 0  # the server ignored Range: start over
            with open(partial, "ab" if offset else "wb") as out:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    fetched += len(block)
        return fetched
    path = os.path.join(source, relative)
    if not os.path.isfile(path):
        raise StagingError(f"{relative}: not in the source {source}")
    with open(path, "rb") as src, open(partial, "ab") as out:
        src.seek(offset)
        for block in iter(lambda: src.read(CHUNK), b""):
            out.write(block)
            fetched += len(block)
    return fetched


def stage(
    source: str,
    dest: str,
    name: str,
    revision: str,
    manifest: dict[str, str],
    check_mode: bool,
    s3: S3 | None = None,
) -> dict:
    """Bring ``name``/``revision`` to ``dest`` from ``source`` and point ``current`` at it."""
    model = os.path.join(dest, name)
    final = os.path.join(model, revision)
    staging = final + ".staging"
    current = os.path.join(model, "current")
    digest = manifest_digest(manifest)
    marker = os.path.join(final, VERIFIED)
    verified = os.path.exists(marker) and Path(marker).read_text().strip() == digest
    points_here = os.path.islink(current) and os.readlink(current) == revision
    result = {
        "changed": False,
        "path": final,
        "current": current,
        "fetched_files": [],
        "fetched_bytes": 0,
        "kept_files": 0,
        "switched": False,
        "manifest_digest": digest,
    }
    if verified and points_here:
        result["kept_files"] = len(manifest)
        return result
    result["changed"] = True
    if check_mode:
        result["fetched_files"] = [] if verified else sorted(manifest)
        result["switched"] = not points_here
        return result
    if not verified:
        work = staging  # kept across failed runs: finished files and partial ones are resumed from it
        os.makedirs(work, exist_ok=True)
        for relative, expected in sorted(manifest.items()):
            target = os.path.join(work, relative)
            if os.path.isfile(target) and sha256_of(target) == expected:
                result["kept_files"] += 1
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            partial = target + ".partial"
            result["fetched_bytes"] += _fetch(source, relative, partial, s3)
            actual = sha256_of(partial)
            if actual != expected:
                os.unlink(partial)
                raise StagingError(
                    f"{relative}: sha256 {actual} does not match the manifest's {expected}; the file was discarded "
                    f"and {name}/current still points where it did"
                )
            os.replace(partial, target)
            result["fetched_files"].append(relative)
        with open(os.path.join(work, VERIFIED), "w") as handle:
            handle.write(digest + "\n")
        if os.path.isdir(final):
            shutil.rmtree(final)  # an unverified leftover of the same revision
        os.rename(staging, final)
    if not points_here:
        link = current + ".new"
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(revision, link)
        os.replace(link, current)
        result["switched"] = True
    return result
