"""Upload one run's chunks to S3 concurrently, with bounded memory, and complete the run.

A run writes into the first generation of its run key that is not complete
(:meth:`~flux_provider.hooks.run_store.RunStore.next_run`), so a complete run is
never rewritten (a Hive partition may point at it) while a failed try's prefix is
resumed: chunks already there with the same CRC32, size and rows are skipped.
Before uploading, multipart uploads a killed try left under the prefix are
aborted; on failure the in-flight ones are. After the last chunk, objects of the
run that are not part of it (stale chunks of an earlier try) are deleted, the
manifest is written, and only then the pointer. A split run's part writes a part
manifest instead (:mod:`flux_provider.hooks.split_publish` publishes the run). A
try that Airflow gave up (a zombie) writes no chunk once the run is published.

Chunks below the multipart threshold go up in one PUT each with a CRC32 that S3
checks; larger ones as s3transfer multipart uploads with a CRC32 per part.
Memory: ``max_inflight`` chunks are held while uploading (a semaphore blocks the
producer), so with the chunker the upload holds about
``(max_inflight + 2) * chunk_size + 3 * (workers + 1) * block_size`` bytes.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from flux_provider.errors import ErrorClass, FluxError, flux_error
from flux_provider.hooks.run_store import RunStore
from flux_provider.hooks.s3_errors import classify_s3
from flux_provider.run_records import Chunk, Manifest, PartManifest
from flux_provider.s3_layout import DatasetLayout, Generation

log = logging.getLogger(__name__)


@dataclass
class UploadedChunk:
    """A chunk this try uploaded, or found already uploaded by an earlier try (``skipped``)."""

    chunk: Chunk
    skipped: bool = False

    @property
    def key(self) -> str:
        return self.chunk.key


@dataclass
class GenerationUpload:
    """The state of the upload of one generation of a run in S3; :meth:`ChunkUploader.publish` turns it into a
    manifest."""

    generation: Generation
    chunks: list[UploadedChunk] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.generation.prefix

    @property
    def reused(self) -> int:
        return sum(c.skipped for c in self.chunks)


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

        self.layout = DatasetLayout(bucket, location)
        self.store = RunStore(client, self.layout, dataset=dataset, step="upload")
        self.client, self.bucket, self.run_key, self.dataset = client, bucket, run_key, dataset
        self.extension, self.part, self.fixed_prefix, self.attempt = extension, part, prefix, attempt
        self.max_inflight, self.clock = max_inflight, clock
        self.transfer_config = transfer_config or TransferConfig()
        self._slots = threading.BoundedSemaphore(max_inflight)
        self._pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="s3-chunk")
        self._futures: list[Future] = []
        self._existing: set[str] = set()  # keys an earlier try left under this run's prefix
        self.upload: GenerationUpload | None = None

    def _error(self, what: str, exc: BaseException) -> FluxError:
        return flux_error(f"{what}: {exc}", error_class=classify_s3(exc), dataset=self.dataset, step="upload")

    # ------------------------------------------------------------------ start
    def start(self) -> GenerationUpload:
        """Choose this run's prefix, abort multipart uploads a killed try left there, list its chunks.

        A part only ever touches its own chunks: the other parts of the run upload beside it."""
        try:
            run = self._run()
            mine = run.chunk_prefix(self.part)
            aborted = self._abort_uploads(mine)
            if aborted:
                log.info("aborted %d multipart uploads left under %s by an earlier try", aborted, mine)
            self._existing.update(self.store.sizes(mine))
        except FluxError:
            raise
        except Exception as exc:  # boto raises many unrelated types; all are classified
            raise self._error(f"preparing {self.layout.url}", exc) from exc
        if self._existing:
            log.info("resuming %s: %d objects from an earlier try", mine, len(self._existing))
        self.upload = GenerationUpload(run)
        return self.upload

    def _run(self) -> Generation:
        if self.fixed_prefix is None:
            return self.store.next_generation(self.run_key)
        run = self.layout.generation_at(self.fixed_prefix)
        if self.store.exists(run.manifest_key):
            raise flux_error(
                f"part {self.part}: the run {run.url} is already published and is never rewritten. Clear the "
                "run's plan task with this one (a new plan uploads a new generation)",
                error_class=ErrorClass.CONFIG,
                dataset=self.dataset,
                step="upload",
            )
        return run

    def _abort_uploads(self, prefix: str) -> int:
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix).get("Uploads", [])
        for upload in uploads:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        return len(uploads)

    # ------------------------------------------------------------------ chunks
    def submit(self, chunk) -> None:
        """Queue ``chunk`` for upload; blocks while ``max_inflight`` chunks are in flight."""
        self._raise_failed()
        self._slots.acquire()
        key = self.upload.generation.chunk_key(self.part, chunk.index, self.extension)
        self._futures.append(self._pool.submit(self._upload, key, chunk))

    def _upload(self, key: str, chunk) -> UploadedChunk:
        try:
            crc32 = f"{chunk.crc32:08x}"  # computed here, in the upload thread
            done = UploadedChunk(
                Chunk(key=key, rows=chunk.rows, bytes=len(chunk.data), raw_bytes=chunk.raw_bytes, crc32=crc32)
            )
            metadata = {"flux-crc32": crc32, "flux-rows": str(chunk.rows)}
            if key in self._existing:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
                if head.get("Metadata") == metadata and head.get("ContentLength") == len(chunk.data):
                    done.skipped = True
                    return done
            if self.store.exists(self.upload.generation.manifest_key):
                raise self._superseded()
            self._put(key, chunk, metadata)
            return done
        finally:
            self._slots.release()

    def _put(self, key: str, chunk, metadata: dict) -> None:
        if len(chunk.data) < self.transfer_config.multipart_threshold:
            # One PUT from memory with the CRC32, which S3 checks: as fast as s3transfer on a file.
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=chunk.data,
                Metadata=metadata,
                ChecksumCRC32=base64.b64encode(chunk.crc32.to_bytes(4, "big")).decode(),
            )
            return
        # Multipart through s3transfer, a CRC32 per part (s3transfer aborts its own upload if a part fails).
        self.client.upload_fileobj(
            io.BytesIO(chunk.data),
            self.bucket,
            key,
            Config=self.transfer_config,
            ExtraArgs={"Metadata": metadata, "ChecksumAlgorithm": "CRC32"},
        )

    def _superseded(self) -> FluxError:
        """A run's prefix is never rewritten once published: an uploader that finds it published was
        overtaken by a newer try of the same run (this one is a zombie)."""
        return flux_error(
            f"superseded: {self.upload.generation.url} was published by another try while this try "
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
                raise self._error(f"uploading to {self.upload.generation.url}", exc) from exc

    def finish(self) -> GenerationUpload:
        """Wait for every chunk; raise the first failure."""
        for future in self._futures:
            try:
                self.upload.chunks.append(future.result())
            except FluxError:
                raise
            except Exception as exc:  # classified below, whatever boto raised
                raise self._error(f"uploading to {self.upload.generation.url}", exc) from exc
        self._futures.clear()
        return self.upload

    def abort(self) -> None:
        """Stop: drop queued chunks and abort multipart uploads in flight under this run's prefix."""
        for future in self._futures:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.upload is None:
            return
        try:
            self._abort_uploads(self.upload.generation.chunk_prefix(self.part))
        except Exception as exc:  # cleanup is best effort: the next try aborts leftovers at start
            log.warning("could not abort multipart uploads under %s: %s", self.upload.prefix, exc)

    # ------------------------------------------------------------------ complete
    def _delete_stale(self) -> None:
        keep = {c.key for c in self.upload.chunks}
        stale = [k for k in self._existing if k not in keep]
        self.store.delete(stale)
        if stale:
            log.info("deleted %d stale objects of an earlier try under %s", len(stale), self.upload.prefix)

    def _chunks(self) -> list[Chunk]:
        return [c.chunk for c in self.upload.chunks]

    def publish(self, **fields) -> Manifest:
        """Delete stale objects, write the manifest, then switch the pointer. Returns the manifest.

        ``fields``: what else the manifest records (columns, encoding, compression, source, day)."""
        generation = self.upload.generation
        try:
            self.store.refuse_if_superseded(generation, self.run_key, self.attempt, self.store.manifest(generation))
            self._delete_stale()
            manifest = Manifest.summing(
                self.bucket,
                generation.prefix,
                self._chunks(),
                run_key=self.run_key,
                dataset=self.dataset,
                attempt=self.attempt,
                **fields,
            )
            self.store.put(generation.manifest_key, manifest)
            self.store.point(manifest)
        except FluxError:
            raise
        except Exception as exc:  # classified
            raise self._error(f"publishing {generation.url}", exc) from exc
        return manifest

    def publish_part(self, **fields) -> PartManifest:
        """A part of a split run is complete: delete its stale chunks and write ``_parts/<part>.json``
        (the generation itself is published once, by :func:`~flux_provider.hooks.split_publish.publish_parts`)."""
        generation = self.upload.generation
        try:
            self._delete_stale()
            manifest = PartManifest.summing(
                self.bucket,
                generation.prefix,
                self._chunks(),
                part=self.part,
                run_key=self.run_key,
                dataset=self.dataset,
                **fields,
            )
            self.store.put(generation.part_manifest_key(self.part), manifest)
        except FluxError:
            raise
        except Exception as exc:  # classified
            raise self._error(f"writing part {self.part} of {generation.url}", exc) from exc
        return manifest

    def close(self) -> None:
        self._pool.shutdown(wait=True)


#: Deprecated name of :class:`GenerationUpload`.
RunUpload = GenerationUpload

__all__ = ["ChunkUploader", "GenerationUpload", "RunUpload", "UploadedChunk"]
