"""Upload Hive text chunks of one run to S3 and publish the run atomically.

Layout under a data set's location ``s3://bucket/prefix``::

    runs/<run_key>/part-00000.hive[.gz]   chunks (immutable once the run is complete)
    runs/<run_key>/_manifest.json         written last: chunks, rows, bytes, checksums, schema, encoding
    _published.json                       the pointer: which run is current (one PUT, atomic)

A split run (several parts, each its own task) names its chunks after the part
(``runs/<run_key>/p03-00000.hive.gz``) and each part, when complete, writes
``runs/<run_key>/_parts/p03.json``; :func:`publish_parts` then writes the one
manifest of all parts and the pointer. Hive skips ``_``-prefixed files and folders.

Protocol: a run writes into the first generation prefix ``runs/<run_key>/``,
``runs/<run_key>.1/``, ... that has no manifest yet, so a complete run is never
rewritten (a Hive partition may point at it) while a failed try's prefix is
resumed: chunks already there with the same CRC32, size and rows are skipped. Before
uploading, multipart uploads left under that prefix by a killed try are
aborted; on failure the in-flight ones are aborted. After the last chunk,
objects in the prefix that are not part of this run (stale chunks of an earlier
try) are deleted, the manifest is written, and only then the pointer. A reader
that follows pointer -> manifest never sees half a run. A try that Airflow gave
up (a zombie) writes no chunk once the run is published, never publishes over a
newer try (the pointer write is conditional), and :func:`changed_since_published`
lets a reader refuse a run whose chunks changed after it was published.

Chunks below the multipart threshold go up in one PUT each with a CRC32 that S3
checks; larger ones as s3transfer multipart uploads with a CRC32 per part.

Memory: ``max_inflight`` chunks are held while uploading (a semaphore blocks the
producer), so with the chunker the upload holds about
``(max_inflight + 2) * chunk_size + 3 * (workers + 1) * block_size`` bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from flux_provider.errors import ErrorClass, FluxError, flux_error

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
POINTER = "_published.json"
PARTS = "_parts/"
FORMAT = "flux-hive-text/1"
PART_FORMAT = "flux-hive-text-part/1"

_CODES = {
    "AccessDenied": ErrorClass.PERMISSION,
    "AllAccessDisabled": ErrorClass.PERMISSION,
    "InvalidAccessKeyId": ErrorClass.LOGIN,
    "SignatureDoesNotMatch": ErrorClass.LOGIN,
    "ExpiredToken": ErrorClass.LOGIN,
    "NoSuchBucket": ErrorClass.MISSING_OBJECT,
    "SlowDown": ErrorClass.THROTTLED,
    "RequestLimitExceeded": ErrorClass.THROTTLED,
    "ServiceUnavailable": ErrorClass.THROTTLED,
    "503": ErrorClass.THROTTLED,
    "RequestTimeout": ErrorClass.TIMEOUT,
    "InternalError": ErrorClass.CONNECTION,
    "500": ErrorClass.CONNECTION,
    "BadDigest": ErrorClass.DATA,
    "InvalidDigest": ErrorClass.DATA,
    "EntityTooLarge": ErrorClass.DATA,
}


def classify_s3(exc: BaseException) -> ErrorClass:
    """Class of a boto/s3transfer failure: throttling and 5xx transient, access and buckets terminal."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return _CODES.get(code) or (ErrorClass.CONNECTION if status and status >= 500 else ErrorClass.UNKNOWN)
    if isinstance(exc, ReadTimeoutError):  # the endpoint accepted the connection and never answered
        return ErrorClass.CONNECTION
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ConnectionError)):
        return ErrorClass.CONNECTION
    if isinstance(exc, BotoCoreError):
        return ErrorClass.CONNECTION
    return ErrorClass.UNKNOWN


def split_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} has no bucket")
    return bucket, prefix.strip("/")


@dataclass
class UploadedChunk:
    key: str
    rows: int
    bytes: int
    raw_bytes: int
    crc32: str  # 8 hex digits, checked by S3 on upload
    skipped: bool = False


@dataclass
class RunUpload:
    """The state of one run's upload; :meth:`ChunkUploader.publish` turns it into a manifest."""

    bucket: str
    location: str  # the data set's prefix
    prefix: str  # this run's prefix (ends with /)
    chunks: list[UploadedChunk] = field(default_factory=list)


class ChunkUploader:
    """Uploads chunks concurrently with bounded memory, then publishes the run."""

    def __init__(
        self,
        client,
        bucket: str,
        location: str,
        run_key: str,
        *,
        dataset: str | None = None,
        extension: str = ".hive",
        max_inflight: int = 4,
        transfer_config=None,
        clock: Callable[[], float] = time.monotonic,
        part: str | None = None,
        prefix: str | None = None,
        attempt: int | None = None,
    ):
        """``part``: this uploader writes one part of a split run, into ``prefix`` (fixed by the plan).
        ``attempt``: the task's try number; a try never publishes over a newer try of the same run."""
        from boto3.s3.transfer import TransferConfig

        self.client, self.bucket, self.location = client, bucket, location.strip("/")
        self.run_key, self.dataset, self.extension = run_key, dataset, extension
        self.part, self.fixed_prefix, self.attempt = part, prefix, attempt
        self.max_inflight, self.clock = max_inflight, clock
        self.transfer_config = transfer_config or TransferConfig()
        self._slots = threading.BoundedSemaphore(max_inflight)
        self._pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="s3-chunk")
        self._futures: list[Future] = []
        self._existing: set[str] = set()  # keys an earlier try left under this run's prefix
        self.run: RunUpload | None = None

    def _error(self, what: str, exc: BaseException) -> FluxError:
        return flux_error(f"{what}: {exc}", error_class=classify_s3(exc), dataset=self.dataset, step="upload")

    def _key(self, relative: str) -> str:
        return f"{self.location}/{relative}" if self.location else relative

    # ------------------------------------------------------------------ start
    @property
    def _chunk_name(self) -> str:
        return self.part or "part"

    def start(self) -> RunUpload:
        """Choose this run's prefix, abort multipart uploads a killed try left there, list its chunks.

        A part only ever touches its own chunks: the other parts of the run upload beside it."""
        try:
            if self.fixed_prefix is None:
                prefix = run_prefix(self.client, self.bucket, self.location, self.run_key)
            else:
                prefix = self.fixed_prefix
                if _exists(self.client, self.bucket, prefix + MANIFEST):
                    raise flux_error(
                        f"part {self.part}: the run s3://{self.bucket}/{prefix} is already published and is never "
                        "rewritten. Clear the run's plan task with this one (a new plan uploads a new generation)",
                        error_class=ErrorClass.CONFIG,
                        dataset=self.dataset,
                        step="upload",
                    )
            mine = prefix + f"{self._chunk_name}-"
            uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=mine).get("Uploads", [])
            for upload in uploads:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            if uploads:
                log.info("aborted %d multipart uploads left under %s by an earlier try", len(uploads), mine)
            self._existing.update(_list(self.client, self.bucket, mine))
        except FluxError:
            raise
        except Exception as exc:  # boto raises many unrelated types; all are classified
            raise self._error(f"preparing s3://{self.bucket}/{self.location}", exc) from exc
        if self._existing:
            log.info("resuming %s: %d objects from an earlier try", mine, len(self._existing))
        self.run = RunUpload(self.bucket, self.location, prefix)
        return self.run

    # ------------------------------------------------------------------ chunks
    def submit(self, chunk) -> None:
        """Queue ``chunk`` for upload; blocks while ``max_inflight`` chunks are in flight."""
        self._raise_failed()
        self._slots.acquire()
        key = f"{self.run.prefix}{self._chunk_name}-{chunk.index:05d}{self.extension}"
        self._futures.append(self._pool.submit(self._upload, key, chunk))

    def _upload(self, key: str, chunk) -> UploadedChunk:
        try:
            crc32 = f"{chunk.crc32:08x}"  # computed here, in the upload thread
            done = UploadedChunk(key, chunk.rows, len(chunk.data), chunk.raw_bytes, crc32)
            metadata = {"flux-crc32": crc32, "flux-rows": str(chunk.rows)}
            if key in self._existing:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
                if head.get("Metadata") == metadata and head.get("ContentLength") == len(chunk.data):
                    done.skipped = True
                    return done
            if _exists(self.client, self.bucket, self.run.prefix + MANIFEST):
                raise self._superseded()
            if len(chunk.data) < self.transfer_config.multipart_threshold:
                # One PUT from memory with the CRC32, which S3 checks: as fast as s3transfer on a
                # file, which an upload_fileobj per chunk was not.
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=chunk.data,
                    Metadata=metadata,
                    ChecksumCRC32=base64.b64encode(chunk.crc32.to_bytes(4, "big")).decode(),
                )
                return done
            # Multipart through s3transfer, a CRC32 per part (s3transfer aborts its own upload if a
            # part fails). A TransferManager shared by all chunks was tried: no faster here, and it
            # could hang after the endpoint died mid-run.
            self.client.upload_fileobj(
                io.BytesIO(chunk.data),
                self.bucket,
                key,
                Config=self.transfer_config,
                ExtraArgs={"Metadata": metadata, "ChecksumAlgorithm": "CRC32"},
            )
            return done
        finally:
            self._slots.release()

    def _superseded(self) -> FluxError:
        """A run's prefix is never rewritten once published: an uploader that finds it published was
        overtaken by a newer try of the same run (this one is a zombie)."""
        return flux_error(
            f"superseded: s3://{self.bucket}/{self.run.prefix} was published by another try while this try "
            f"({self.attempt}) was uploading to it; Airflow gave this try up (its worker was cut off or too slow "
            "to heartbeat) and it writes nothing more",
            error_class=ErrorClass.SUPERSEDED,
            dataset=self.dataset,
            step="upload",
        )

    def _raise_failed(self) -> None:
        for future in self._futures:
            if future.done() and future.exception() is not None:
                exc = future.exception()
                if isinstance(exc, FluxError):
                    raise exc
                raise self._error(f"uploading to s3://{self.bucket}/{self.run.prefix}", exc) from exc

    def finish(self) -> RunUpload:
        """Wait for every chunk; raise the first failure."""
        for future in self._futures:
            try:
                self.run.chunks.append(future.result())
            except FluxError:
                raise
            except Exception as exc:  # classified below, whatever boto raised
                raise self._error(f"uploading to s3://{self.bucket}/{self.run.prefix}", exc) from exc
        self._futures.clear()
        return self.run

    def abort(self) -> None:
        """Stop: drop queued chunks and abort multipart uploads in flight under this run's prefix."""
        for future in self._futures:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.run is None:
            return
        try:
            mine = self.run.prefix + f"{self._chunk_name}-"
            uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=mine)
            for upload in uploads.get("Uploads", []):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        except Exception as exc:  # cleanup is best effort: the next try aborts leftovers at start
            log.warning("could not abort multipart uploads under %s: %s", self.run.prefix, exc)

    # ------------------------------------------------------------------ publish
    def _delete_stale(self) -> None:
        keep = {c.key for c in self.run.chunks}
        stale = [k for k in self._existing if k not in keep]
        _delete(self.client, self.bucket, stale)
        if stale:
            log.info("deleted %d stale objects of an earlier try under %s", len(stale), self.run.prefix)

    def publish(self, manifest_extra: dict) -> dict:
        """Delete stale objects, write the manifest, then switch the pointer. Returns the manifest."""
        run = self.run
        try:
            pointer_key = self._key(POINTER)
            published = _get_json(self.client, self.bucket, run.prefix + MANIFEST)
            _refuse_if_superseded(
                self.client, self.bucket, run.prefix, pointer_key, self.run_key, self.attempt, self.dataset, published
            )
            self._delete_stale()
            manifest = _summary(self.bucket, run.prefix, run.chunks, format=FORMAT, dataset=self.dataset)
            manifest = {"run_key": self.run_key, **manifest, **manifest_extra, "try": self.attempt}
            _put_json(self.client, self.bucket, run.prefix + MANIFEST, manifest)
            _point(self.client, self.bucket, pointer_key, self.run_key, run.prefix, manifest, dataset=self.dataset)
        except FluxError:
            raise
        except Exception as exc:  # classified
            raise self._error(f"publishing s3://{self.bucket}/{run.prefix}", exc) from exc
        return manifest

    def publish_part(self, manifest_extra: dict) -> dict:
        """A part of a split run is complete: delete its stale chunks and write ``_parts/<part>.json``
        (the run itself is published once, by :func:`publish_parts`). Returns the part's manifest."""
        run = self.run
        try:
            self._delete_stale()
            manifest = _summary(self.bucket, run.prefix, run.chunks, format=PART_FORMAT, dataset=self.dataset)
            manifest = {"part": self.part, "run_key": self.run_key, **manifest, **manifest_extra}
            _put_json(self.client, self.bucket, part_manifest_key(run.prefix, self.part), manifest)
        except FluxError:
            raise
        except Exception as exc:  # classified
            raise self._error(f"writing part {self.part} of s3://{self.bucket}/{run.prefix}", exc) from exc
        return manifest

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def run_prefix(client, bucket: str, location: str, run_key: str) -> str:
    """The first generation prefix of ``run_key`` (``runs/<key>/``, ``runs/<key>.1/``, ...) not yet published."""
    location = location.strip("/")
    generation = 0
    while True:
        name = run_key if generation == 0 else f"{run_key}.{generation}"
        prefix = f"{location}/runs/{name}/" if location else f"runs/{name}/"
        if not _exists(client, bucket, prefix + MANIFEST):
            return prefix
        generation += 1


def part_manifest_key(prefix: str, part: str) -> str:
    return f"{prefix}{PARTS}{part}.json"


def publish_parts(
    client,
    bucket: str,
    location: str,
    prefix: str,
    run_key: str,
    parts: list[str],
    *,
    dataset: str | None = None,
    before_publish: Callable[[list[dict]], None] | None = None,
    day: str | None = None,
    attempt: int | None = None,
) -> dict:
    """Publish a split run once every part is complete: one manifest of all parts' chunks, then the pointer.

    Every part named in ``parts`` must have written its part manifest, and all must agree on columns,
    encoding and compression; objects under the prefix that no part lists (chunks of an earlier plan
    with other parts) are deleted first; ``before_publish(part_manifests)`` may still refuse. Raises
    before writing anything otherwise."""

    def fail(message: str, error_class: ErrorClass) -> FluxError:
        return flux_error(message, error_class=error_class, dataset=dataset, step="publish")

    location = location.strip("/")
    pointer_key = f"{location}/{POINTER}" if location else POINTER
    manifests = []
    try:
        done = _get_json(client, bucket, prefix + MANIFEST)
        _refuse_if_superseded(client, bucket, prefix, pointer_key, run_key, attempt, dataset, done)
        if done is not None:
            if [p["part"] for p in done.get("parts") or []] != list(parts):
                raise fail(
                    f"s3://{bucket}/{prefix} is already published with other parts; clear the plan task to load "
                    "the run again",
                    ErrorClass.CONFIG,
                )
            # an earlier try of this task published it and died before reporting: finish its work
            log.info("s3://%s/%s was published by an earlier try: pointing at it", bucket, prefix)
            _point(client, bucket, pointer_key, run_key, prefix, {**done, "try": attempt}, dataset=dataset)
            return done
        for part in parts:
            key = part_manifest_key(prefix, part)
            manifest = _get_json(client, bucket, key)
            if manifest is None:
                raise fail(
                    f"part {part} has no manifest at s3://{bucket}/{key}: it did not complete; "
                    "clear its task (and this one) to run it again",
                    ErrorClass.MISSING_OBJECT,
                )
            manifests.append(manifest)
        if not manifests:
            raise fail("the plan has no parts: nothing to publish", ErrorClass.CONFIG)
        first = manifests[0]
        for other in manifests[1:]:
            for name in ("columns", "encoding", "compression"):
                if other.get(name) != first.get(name):
                    raise fail(
                        f"parts {first['part']} and {other['part']} disagree on their {name}: every part of a "
                        "run must return the same columns, encoded the same way. Make the data set's queries "
                        "select the same columns",
                        ErrorClass.DATA,
                    )
        if before_publish is not None:
            before_publish(manifests)
        chunks = [UploadedChunk(**c) for m in manifests for c in m["chunks"]]
        keep = {c.key for c in chunks}
        stale = [k for k in _list(client, bucket, prefix) if k not in keep and not k.startswith(prefix + PARTS)]
        _delete(client, bucket, stale)
        if stale:
            log.info("deleted %d objects under %s that no part of this run lists", len(stale), prefix)
        manifest = {
            "run_key": run_key,
            **_summary(bucket, prefix, chunks, format=FORMAT, dataset=dataset),
            "columns": first.get("columns"),
            "encoding": first.get("encoding"),
            "compression": first.get("compression"),
            "day": day,
            "try": attempt,
            "parts": [
                {"part": m["part"], "rows": m["rows"], "chunks": len(m["chunks"]), "source": m.get("source")}
                for m in manifests
            ],
        }
        _put_json(client, bucket, prefix + MANIFEST, manifest)
        _point(client, bucket, pointer_key, run_key, prefix, manifest, dataset=dataset)
    except FluxError:
        raise
    except Exception as exc:  # classified
        raise flux_error(
            f"publishing s3://{bucket}/{prefix}: {exc}", error_class=classify_s3(exc), dataset=dataset, step="publish"
        ) from exc
    return manifest


def changed_since_published(client, manifest: dict, *, workers: int = 8) -> list[str]:
    """What under a published run's prefix differs from its manifest: a chunk missing, resized or rewritten
    (its ``flux-crc32``), or an object no chunk lists that Hive would read. A try that Airflow gave up (a
    zombie) stops at its next chunk once its successor published, but a chunk it had in flight still lands.
    Empty when the run is intact. One LIST and one HEAD per chunk."""
    bucket, prefix = manifest["bucket"], manifest["prefix"]
    chunks = {c["key"]: c for c in manifest["chunks"]}
    found = _sizes(client, bucket, prefix)
    problems, sized = [], []
    for key, chunk in chunks.items():
        if key not in found:
            problems.append(f"{key} is missing")
        elif found[key] != chunk["bytes"]:
            problems.append(f"{key} has {found[key]} bytes, the manifest {chunk['bytes']}")
        else:
            sized.append(key)
    problems += [
        f"{key} is not in the manifest"
        for key in found
        if key not in chunks and not any(p.startswith(("_", ".")) for p in key[len(prefix) :].split("/"))
    ]

    def crc32(key: str) -> str | None:
        return client.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("flux-crc32")

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-check") as pool:
        for key, found_crc in zip(sized, pool.map(crc32, sized)):
            if found_crc != chunks[key]["crc32"]:
                problems.append(f"{key} was rewritten (CRC32 {found_crc}, the manifest {chunks[key]['crc32']})")
    return problems


def _summary(bucket: str, prefix: str, chunks: list[UploadedChunk], *, format: str, dataset: str | None) -> dict:
    chunks = sorted(chunks, key=lambda c: c.key)
    return {
        "format": format,
        "dataset": dataset,
        "bucket": bucket,
        "prefix": prefix,
        "location": f"s3://{bucket}/{prefix}",
        "rows": sum(c.rows for c in chunks),
        "bytes": sum(c.bytes for c in chunks),
        "raw_bytes": sum(c.raw_bytes for c in chunks),
        "chunks": [
            {"key": c.key, "rows": c.rows, "bytes": c.bytes, "raw_bytes": c.raw_bytes, "crc32": c.crc32} for c in chunks
        ],
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _refuse_if_newer(doc: dict | None, bucket: str, key: str, run_key: str, attempt: int | None, dataset) -> None:
    """Raise ``superseded`` if ``doc`` (the manifest or the pointer at ``key``) was written by a newer try
    of the same run."""
    if attempt is None or not doc or doc.get("run_key") != run_key:
        return
    theirs = doc.get("try")
    if isinstance(theirs, int) and theirs > attempt:
        raise flux_error(
            f"superseded: try {theirs} of this run already published s3://{bucket}/{key}; this try ({attempt}) "
            "was given up by Airflow (its worker was cut off or too slow to heartbeat) and publishes nothing",
            error_class=ErrorClass.SUPERSEDED,
            dataset=dataset,
            step="publish",
        )


def _refuse_if_superseded(
    client, bucket: str, prefix: str, pointer_key: str, run_key: str, attempt: int | None, dataset, manifest
) -> None:
    """Before a try deletes or writes anything of a run: refuse if a newer try of it published already
    (``manifest``: the run's manifest as the caller read it, or None)."""
    _refuse_if_newer(manifest, bucket, prefix + MANIFEST, run_key, attempt, dataset)
    _refuse_if_newer(_get_json(client, bucket, pointer_key), bucket, pointer_key, run_key, attempt, dataset)


#: A conditional pointer write that lost a race is re-read and decided again, at most this often.
POINTER_RACES = 5


def _point(
    client,
    bucket: str,
    pointer_key: str,
    run_key: str,
    prefix: str,
    manifest: dict,
    *,
    dataset: str | None = None,
) -> None:
    """Point the data set at this run, unless it already points at a run of a later day (runs of several
    days load at once in a catch-up: the one that finishes last is not always the newest), or at a newer
    try of this run (a try Airflow gave up and retried elsewhere must not publish over its successor).

    The write is conditional on the pointer read (S3 ``If-Match`` its ETag, ``If-None-Match: *`` when
    there is none): if another writer changed it in between, it is read and decided again."""
    day, attempt = manifest.get("day"), manifest.get("try")
    for _ in range(POINTER_RACES):
        current, etag = _get_json_and_etag(client, bucket, pointer_key)
        _refuse_if_newer(current, bucket, pointer_key, run_key, attempt, dataset)
        if day and str((current or {}).get("day") or "") > day:
            log.info(
                "kept s3://%s/%s at day %s: run %s loads the older day %s",
                bucket,
                pointer_key,
                current["day"],
                run_key,
                day,
            )
            return
        pointer = {
            "run_key": run_key,
            "prefix": prefix,
            "manifest": prefix + MANIFEST,
            "rows": manifest["rows"],
            "day": day,
            "try": attempt,
            "published_at": manifest["created_at"],
        }
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            _put_json(client, bucket, pointer_key, pointer, **condition)
            return
        except Exception as exc:
            if not _lost_race(exc):
                raise
            log.info("s3://%s/%s changed while this run published: reading it again", bucket, pointer_key)
    raise flux_error(
        f"s3://{bucket}/{pointer_key} changed {POINTER_RACES} times while this run published: other writers keep "
        "moving it. Check that one data set is not loaded by two deployments at once",
        error_class=ErrorClass.THROTTLED,
        dataset=dataset,
        step="publish",
    )


def _lost_race(exc: BaseException) -> bool:
    """A conditional write refused because the object changed (412), or was created meanwhile (409)."""
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status in (409, 412) or response.get("Error", {}).get("Code") in (
        "PreconditionFailed",
        "ConditionalRequestConflict",
    )


def _put_json(client, bucket: str, key: str, payload: dict, **condition) -> None:
    body = json.dumps(payload, indent=1).encode()
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    client.put_object(
        Bucket=bucket, Key=key, Body=body, ContentType="application/json", ChecksumSHA256=digest, **condition
    )


def _is_missing(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
        "404",
        "NoSuchKey",
        "NotFound",
    )


def _exists(client, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except Exception as exc:
        if _is_missing(exc):
            return False
        raise


def _get_json(client, bucket: str, key: str) -> dict | None:
    """The JSON object at ``key``, or None when there is none."""
    return _get_json_and_etag(client, bucket, key)[0]


def _get_json_and_etag(client, bucket: str, key: str) -> tuple[dict | None, str | None]:
    """The JSON object at ``key`` and its ETag, or (None, None) when there is none."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if _is_missing(exc):
            return None, None
        raise
    return json.loads(response["Body"].read()), response.get("ETag")


def _sizes(client, bucket: str, prefix: str) -> dict[str, int]:
    """Every object under ``prefix``: key -> size."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}


def _list(client, bucket: str, prefix: str) -> list[str]:
    return list(_sizes(client, bucket, prefix))


def _delete(client, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def read_published(client, bucket: str, location: str) -> tuple[dict, dict]:
    """(pointer, manifest) of a data set's current run."""
    location = location.strip("/")
    pointer_key = f"{location}/{POINTER}" if location else POINTER
    pointer = json.loads(client.get_object(Bucket=bucket, Key=pointer_key)["Body"].read())
    manifest = json.loads(client.get_object(Bucket=bucket, Key=pointer["manifest"])["Body"].read())
    return pointer, manifest
