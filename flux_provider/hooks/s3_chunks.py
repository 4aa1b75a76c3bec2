"""Upload Hive text chunks of one run to S3 and publish the run atomically.

Layout under a data set's location ``s3://bucket/prefix``::

    runs/<run_key>/part-00000.hive[.gz]   chunks (immutable once the run is complete)
    runs/<run_key>/_manifest.json         written last: chunks, rows, bytes, checksums, schema, encoding
    _published.json                       the pointer: which run is current (one PUT, atomic)

Protocol: a run writes into the first generation prefix ``runs/<run_key>/``,
``runs/<run_key>.1/``, ... that has no manifest yet, so a complete run is never
rewritten (a Hive partition may point at it) while a failed try's prefix is
resumed: chunks already there with the same CRC32, size and rows are skipped. Before
uploading, multipart uploads left under that prefix by a killed try are
aborted; on failure the in-flight ones are aborted. After the last chunk,
objects in the prefix that are not part of this run (stale chunks of an earlier
try) are deleted, the manifest is written, and only then the pointer. A reader
that follows pointer -> manifest never sees half a run.

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
FORMAT = "flux-hive-text/1"

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
    ):
        from boto3.s3.transfer import TransferConfig

        self.client, self.bucket, self.location = client, bucket, location.strip("/")
        self.run_key, self.dataset, self.extension = run_key, dataset, extension
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
    def start(self) -> RunUpload:
        """Choose this run's prefix, abort multipart uploads a killed try left there, list its chunks."""
        try:
            generation = 0
            while True:
                name = self.run_key if generation == 0 else f"{self.run_key}.{generation}"
                prefix = self._key(f"runs/{name}/")
                if not self._exists(prefix + MANIFEST):
                    break
                generation += 1
            uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix).get("Uploads", [])
            for upload in uploads:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            if uploads:
                log.info("aborted %d multipart uploads left under %s by an earlier try", len(uploads), prefix)
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    self._existing.add(item["Key"])
        except FluxError:
            raise
        except Exception as exc:  # boto raises many unrelated types; all are classified
            raise self._error(f"preparing s3://{self.bucket}/{self.location}", exc) from exc
        if self._existing:
            log.info("resuming %s: %d objects from an earlier try", prefix, len(self._existing))
        self.run = RunUpload(self.bucket, self.location, prefix)
        return self.run

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    # ------------------------------------------------------------------ chunks
    def submit(self, chunk) -> None:
        """Queue ``chunk`` for upload; blocks while ``max_inflight`` chunks are in flight."""
        self._raise_failed()
        self._slots.acquire()
        key = f"{self.run.prefix}part-{chunk.index:05d}{self.extension}"
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

    def _raise_failed(self) -> None:
        for future in self._futures:
            if future.done() and future.exception() is not None:
                exc = future.exception()
                raise self._error(f"uploading to s3://{self.bucket}/{self.run.prefix}", exc) from exc

    def finish(self) -> RunUpload:
        """Wait for every chunk; raise the first failure."""
        for future in self._futures:
            try:
                self.run.chunks.append(future.result())
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
            uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.run.prefix)
            for upload in uploads.get("Uploads", []):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        except Exception as exc:  # cleanup is best effort: the next try aborts leftovers at start
            log.warning("could not abort multipart uploads under %s: %s", self.run.prefix, exc)

    # ------------------------------------------------------------------ publish
    def publish(self, manifest_extra: dict) -> dict:
        """Delete stale objects, write the manifest, then switch the pointer. Returns the manifest."""
        run = self.run
        keep = {c.key for c in run.chunks}
        try:
            stale = [k for k in self._existing if k not in keep]
            for start in range(0, len(stale), 1000):
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in stale[start : start + 1000]], "Quiet": True},
                )
            if stale:
                log.info("deleted %d stale objects of an earlier try under %s", len(stale), run.prefix)
            chunks = sorted(run.chunks, key=lambda c: c.key)
            manifest = {
                "format": FORMAT,
                "dataset": self.dataset,
                "run_key": self.run_key,
                "bucket": self.bucket,
                "prefix": run.prefix,
                "location": f"s3://{self.bucket}/{run.prefix}",
                "rows": sum(c.rows for c in chunks),
                "bytes": sum(c.bytes for c in chunks),
                "raw_bytes": sum(c.raw_bytes for c in chunks),
                "chunks": [
                    {"key": c.key, "rows": c.rows, "bytes": c.bytes, "raw_bytes": c.raw_bytes, "crc32": c.crc32}
                    for c in chunks
                ],
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **manifest_extra,
            }
            self._put_json(run.prefix + MANIFEST, manifest)
            self._put_json(
                self._key(POINTER),
                {
                    "run_key": self.run_key,
                    "prefix": run.prefix,
                    "manifest": run.prefix + MANIFEST,
                    "rows": manifest["rows"],
                    "published_at": manifest["created_at"],
                },
            )
        except FluxError:
            raise
        except Exception as exc:  # classified
            raise self._error(f"publishing s3://{self.bucket}/{run.prefix}", exc) from exc
        return manifest

    def _put_json(self, key: str, payload: dict) -> None:
        body = json.dumps(payload, indent=1).encode()
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", ChecksumSHA256=digest
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def read_published(client, bucket: str, location: str) -> tuple[dict, dict]:
    """(pointer, manifest) of a data set's current run."""
    location = location.strip("/")
    pointer_key = f"{location}/{POINTER}" if location else POINTER
    pointer = json.loads(client.get_object(Bucket=bucket, Key=pointer_key)["Body"].read())
    manifest = json.loads(client.get_object(Bucket=bucket, Key=pointer["manifest"])["Body"].read())
    return pointer, manifest
