"""A data set's runs in S3: its generations, manifests and pointer, and the conditional pointer write.

A reader that follows pointer -> manifest never sees half a run: the manifest is
written after the last chunk, the pointer after the manifest. The pointer moves
only forward: never to an older day (runs of several days load at once in a
catch-up, and the one that finishes last is not always the newest) and never over
a newer try of the same run (a try Airflow gave up and retried elsewhere must not
publish over its successor). Its write is conditional on what was read (S3
``If-Match`` its ETag, ``If-None-Match: *`` when there is none): if another writer
changed it in between, it is read and decided again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging

from flux_provider.errors import ErrorClass, FluxError, flux_error
from flux_provider.hooks.s3_errors import is_missing, lost_race
from flux_provider.records import Record
from flux_provider.run_records import Manifest, PartManifest, Pointer
from flux_provider.s3_layout import DatasetLayout, Generation

log = logging.getLogger(__name__)

#: A conditional pointer write that lost a race is re-read and decided again, at most this often.
POINTER_RACES = 5


class RunStore:
    """The objects of one data set under its :class:`~flux_provider.s3_layout.DatasetLayout`."""

    def __init__(self, client, layout: DatasetLayout, *, dataset: str | None = None, step: str = "publish"):
        self.client, self.layout, self.dataset, self.step = client, layout, dataset, step

    @property
    def bucket(self) -> str:
        return self.layout.bucket

    # ------------------------------------------------------------------ objects
    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except Exception as exc:
            if is_missing(exc):
                return False
            raise

    def get(self, key: str) -> tuple[dict | None, str | None]:
        """The JSON object at ``key`` and its ETag, or (None, None) when there is none."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_missing(exc):
                return None, None
            raise
        return json.loads(response["Body"].read()), response.get("ETag")

    def put(self, key: str, record: Record, **condition) -> None:
        """Write ``record`` as JSON, with a SHA-256 that S3 checks (and ``condition``: If-Match/If-None-Match)."""
        body = json.dumps(record.to_json(), indent=1).encode()
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", ChecksumSHA256=digest, **condition
        )

    def sizes(self, prefix: str) -> dict[str, int]:
        """Every object under ``prefix``: key -> size."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    # ------------------------------------------------------------------ runs
    def next_generation(self, run_key: str) -> Generation:
        """The first generation of ``run_key`` that is not complete yet."""
        generation = 0
        while self.exists(self.layout.generation(run_key, generation).manifest_key):
            generation += 1
        return self.layout.generation(run_key, generation)

    next_run = next_generation  # deprecated name (1.0)

    def manifest(self, run: Generation) -> Manifest | None:
        return self.manifest_at(run.manifest_key)

    def manifest_at(self, key: str) -> Manifest | None:
        """The manifest at ``key`` (an upload's result names it), or None when there is none."""
        return Manifest.from_json(self.get(key)[0])

    def part_manifest(self, run: Generation, part: str) -> PartManifest | None:
        return PartManifest.from_json(self.get(run.part_manifest_key(part))[0])

    def pointer(self) -> tuple[Pointer | None, str | None]:
        """The pointer and its ETag, or (None, None) when nothing is published."""
        value, etag = self.get(self.layout.pointer_key)
        return Pointer.from_json(value), etag

    def published(self) -> tuple[Pointer, Manifest]:
        """The pointer and the manifest of the data set's current run (KeyError when nothing is published)."""
        pointer = self.pointer()[0]
        if pointer is None:
            raise KeyError(f"nothing is published under {self.layout.url}")
        return pointer, Manifest.from_json(self.get(pointer.manifest)[0])

    # ------------------------------------------------------------------ tries
    def refuse_if_newer(self, doc: Manifest | Pointer | None, key: str, run_key: str, attempt: int | None) -> None:
        """Raise ``superseded`` if ``doc`` (read at ``key``) was written by a newer try of the same run."""
        if attempt is None or doc is None or doc.run_key != run_key:
            return
        if isinstance(doc.attempt, int) and doc.attempt > attempt:
            raise flux_error(
                f"superseded: try {doc.attempt} of this run already published s3://{self.bucket}/{key}; this try "
                f"({attempt}) was given up by Airflow (its worker was cut off or too slow to heartbeat) and "
                "publishes nothing",
                error_class=ErrorClass.SUPERSEDED,
                dataset=self.dataset,
                step="publish",
            )

    def refuse_if_superseded(self, run: Generation, run_key: str, attempt: int | None, manifest: Manifest | None):
        """Before a try deletes or writes anything of a run: refuse if a newer try of it published already
        (``manifest``: the run's manifest as the caller read it, or None)."""
        self.refuse_if_newer(manifest, run.manifest_key, run_key, attempt)
        self.refuse_if_newer(self.pointer()[0], self.layout.pointer_key, run_key, attempt)

    # ------------------------------------------------------------------ publish
    def point(self, manifest: Manifest) -> None:
        """Point the data set at ``manifest``'s run, unless the pointer is at a later day or a newer try."""
        key = self.layout.pointer_key
        for _ in range(POINTER_RACES):
            current, etag = self.pointer()
            self.refuse_if_newer(current, key, manifest.run_key, manifest.attempt)
            if manifest.day and str((current.day if current else None) or "") > manifest.day:
                log.info(
                    "kept s3://%s/%s at day %s: run %s loads the older day %s",
                    self.bucket,
                    key,
                    current.day,
                    manifest.run_key,
                    manifest.day,
                )
                return
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.put(key, Pointer.to(manifest), **condition)
                return
            except Exception as exc:
                if not lost_race(exc):
                    raise
                log.info("s3://%s/%s changed while this run published: reading it again", self.bucket, key)
        raise flux_error(
            f"s3://{self.bucket}/{key} changed {POINTER_RACES} times while this run published: other writers "
            "keep moving it. Check that one data set is not loaded by two deployments at once",
            error_class=ErrorClass.THROTTLED,
            dataset=self.dataset,
            step="publish",
        )

    def fail(self, message: str, error_class: ErrorClass) -> FluxError:
        return flux_error(message, error_class=error_class, dataset=self.dataset, step=self.step)


__all__ = ["POINTER_RACES", "RunStore"]
