"""Stage model weights onto the hot tier: verified, resumable, switched in atomically.

Layout under ``dest``: ``<name>/<revision>/`` holds the files, ``<name>/current`` is a link to the
revision being served. A revision is built in ``<revision>.staging`` and renamed into place only when every
file matches the manifest's sha256; ``current`` then moves with one rename, so a server never sees a
half-copied model. A verified revision carries ``.ironserve-verified`` (the manifest's digest) and is
skipped on the next run without re-reading its files. Stdlib only: it runs on the target.

Each byte is read once: a file is hashed as it arrives (a resumed one hashes its partial prefix once first), and
a file verified by an interrupted run is kept by its record in ``<revision>.staging/.ironserve-progress`` (digest,
size, mtime) rather than read again. Several files come at once (``parallel``), and the revision's missing bytes
are checked against the free space before the first one.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VERIFIED = ".ironserve-verified"
# The manifest a verified revision was checked against, kept beside it: backed up instead of the weights themselves.
MANIFEST = ".ironserve-manifest"
PROGRESS = ".ironserve-progress"
CHUNK = 4 * 1024 * 1024
PARALLEL = 4
GIB = 1024**3


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


def manifest_text(manifest: dict[str, str]) -> str:
    """The manifest in sha256sum's format, sorted: what its digest is taken of."""
    return "".join(f"{d}  {p}\n" for p, d in sorted(manifest.items()))


def manifest_digest(manifest: dict[str, str]) -> str:
    return hashlib.sha256(manifest_text(manifest).encode()).hexdigest()


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

    def request(
        self, source: str, relative: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> urllib.request.Request:
        bucket_path = source.removeprefix("s3://").strip("/") + "/" + relative
        url = self.endpoint + "/" + urllib.parse.quote(bucket_path, safe="/~")
        signed = sigv4_headers(method, url, headers or {}, self.access_key, self.secret_key, self.region)
        return urllib.request.Request(url, headers=signed, method=method)  # noqa: S310 - the inventory's endpoint


def _request(source: str, relative: str, s3: S3 | None, headers: dict[str, str] | None = None, method: str = "GET"):
    if source.startswith("s3://"):
        if s3 is None:
            raise StagingError(f"{source} is an S3 source: give s3_endpoint and s3_credentials_file")
        return s3.request(source, relative, headers, method)
    return urllib.request.Request(source.rstrip("/") + "/" + relative, headers=headers or {}, method=method)  # noqa: S310


def source_size(source: str, relative: str, s3: S3 | None = None) -> int | None:
    """The size of one source file (a HEAD request for remote sources); None when the source does not say."""
    if not _is_remote(source):
        path = os.path.join(source, relative)
        if not os.path.isfile(path):
            raise StagingError(f"{relative}: not in the source {source}")
        return os.path.getsize(path)
    try:
        with urllib.request.urlopen(_request(source, relative, s3, method="HEAD"), timeout=60) as response:  # noqa: S310
            length = response.headers.get("Content-Length")
    except urllib.error.HTTPError as exc:
        if exc.code in (405, 501):  # a server without HEAD: the size stays unknown
            return None
        raise StagingError(f"{relative}: the source answered HTTP {exc.code}") from exc
    return int(length) if length and length.isdigit() else None


def read_source_text(source: str, relative: str, s3: S3 | None = None) -> str:
    if _is_remote(source):
        with urllib.request.urlopen(_request(source, relative, s3), timeout=60) as response:  # noqa: S310
            return response.read().decode()
    with open(os.path.join(source, relative)) as handle:
        return handle.read()


def _hash_prefix(partial: str) -> tuple[int, hashlib._Hash]:
    digest = hashlib.sha256()
    if not os.path.exists(partial):
        return 0, digest
    with open(partial, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return os.path.getsize(partial), digest


def _fetch(source: str, relative: str, partial: str, s3: S3 | None = None) -> tuple[int, str]:
    """Append the rest of ``relative`` to ``partial`` (resuming where it stops), hashing every byte once as it is
    written; return the bytes fetched and the whole file's sha256."""
    offset, digest = _hash_prefix(partial)
    fetched = 0

    def copy(stream, mode: str) -> None:
        nonlocal fetched
        with open(partial, mode) as out:
            for block in iter(lambda: stream.read(CHUNK), b""):
                out.write(block)
                digest.update(block)
                fetched += len(block)

    if _is_remote(source):
        request = _request(source, relative, s3, {"Range": f"bytes={offset}-"} if offset else None)
        try:
            response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - a URL the inventory names
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # nothing left to send: the partial file is complete
                return 0, digest.hexdigest()
            raise StagingError(f"{relative}: the source answered HTTP {exc.code}") from exc
        with response:
            if offset and response.status != 206:
                digest = hashlib.sha256()  # the server ignored Range: start over
                offset = 0
            copy(response, "ab" if offset else "wb")
        return fetched, digest.hexdigest()
    path = os.path.join(source, relative)
    if not os.path.isfile(path):
        raise StagingError(f"{relative}: not in the source {source}")
    with open(path, "rb") as src:
        src.seek(offset)
        copy(src, "ab")
    return fetched, digest.hexdigest()


def _read_progress(work: str) -> dict[str, tuple[str, int, int]]:
    """Files an earlier, interrupted run verified: relative path -> (sha256, size, mtime_ns) when verified."""
    kept = {}
    try:
        with open(os.path.join(work, PROGRESS)) as handle:
            for line in handle:
                fields = line.rstrip("\n").split(" ", 3)
                if len(fields) == 4 and fields[1].isdigit() and fields[2].isdigit():
                    kept[fields[3]] = (fields[0], int(fields[1]), int(fields[2]))
    except FileNotFoundError:
        pass
    return kept


def _record(work: str, relative: str, digest: str) -> None:
    status = os.stat(os.path.join(work, relative))
    with open(os.path.join(work, PROGRESS), "a") as record:
        record.write(f"{digest} {status.st_size} {status.st_mtime_ns} {relative}\n")


def _still_verified(target: str, record: tuple[str, int, int] | None, expected: str) -> bool:
    if record is None or record[0] != expected or not os.path.isfile(target):
        return False
    status = os.stat(target)
    return (status.st_size, status.st_mtime_ns) == record[1:]


def _check_free_space(work: str, sizes: dict[str, int | None], name: str, revision: str) -> int:
    """Refuse before the first byte when the revision's missing bytes do not fit; return the bytes needed."""
    needed = 0
    for relative, size in sizes.items():
        partial = os.path.join(work, relative) + ".partial"
        if size is not None:
            needed += max(0, size - (os.path.getsize(partial) if os.path.exists(partial) else 0))
    free = shutil.disk_usage(work).free
    if needed > free:
        unknown = [r for r, size in sizes.items() if size is None]
        raise StagingError(
            f"{name}/{revision} needs {needed / GIB:.1f} GiB more on {os.path.dirname(os.path.dirname(work))}, "
            f"which has {free / GIB:.1f} GiB free"
            + (f" ({len(unknown)} file(s) of unknown size not counted)" if unknown else "")
            + "; free space there (older revisions under the model folder) or give the hot tier more disks"
        )
    return needed


def stage(
    source: str,
    dest: str,
    name: str,
    revision: str,
    manifest: dict[str, str],
    check_mode: bool,
    s3: S3 | None = None,
    parallel: int = PARALLEL,
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
        "needed_bytes": 0,
    }
    if verified and points_here:
        result["kept_files"] = len(manifest)
        if not os.path.exists(os.path.join(final, MANIFEST)):  # a revision verified before manifests were kept
            result["changed"] = True
            if not check_mode:
                Path(final, MANIFEST).write_text(manifest_text(manifest))
        return result
    result["changed"] = True
    if check_mode:
        result["fetched_files"] = [] if verified else sorted(manifest)
        result["switched"] = not points_here
        return result
    if not verified:
        work = staging  # kept across failed runs: finished files and partial ones are resumed from it
        os.makedirs(work, exist_ok=True)
        progress = _read_progress(work)
        todo = []
        for relative, expected in sorted(manifest.items()):
            target = os.path.join(work, relative)
            if _still_verified(target, progress.get(relative), expected):
                result["kept_files"] += 1
            elif relative not in progress and os.path.isfile(target) and sha256_of(target) == expected:
                # Finished but not recorded (a run stopped between the rename and its record): hashed once, kept.
                _record(work, relative, expected)
                result["kept_files"] += 1
            else:
                todo.append(relative)
        workers = max(1, min(parallel, len(todo) or 1))
        with ThreadPoolExecutor(workers) as pool:
            sizes = dict(zip(todo, pool.map(lambda r: source_size(source, r, s3), todo), strict=True))
        result["needed_bytes"] = _check_free_space(work, sizes, name, revision)
        record_lock = threading.Lock()

        def stage_one(relative: str) -> tuple[int, str | None]:
            target = os.path.join(work, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            partial = target + ".partial"
            fetched, actual = _fetch(source, relative, partial, s3)
            if actual != manifest[relative]:
                os.unlink(partial)
                return fetched, f"{relative}: sha256 {actual} does not match the manifest's {manifest[relative]}"
            os.replace(partial, target)
            with record_lock:
                _record(work, relative, actual)
            return fetched, None

        with ThreadPoolExecutor(workers) as pool:
            outcomes = list(zip(todo, pool.map(stage_one, todo), strict=True))
        problems = []
        for relative, (fetched, problem) in outcomes:
            result["fetched_bytes"] += fetched
            if problem:
                problems.append(problem)
            else:
                result["fetched_files"].append(relative)
        if problems:
            raise StagingError(
                "; ".join(problems) + f"; the file(s) were discarded and {name}/current still points where it did"
            )
        Path(work, PROGRESS).unlink(missing_ok=True)
        Path(work, MANIFEST).write_text(manifest_text(manifest))
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
