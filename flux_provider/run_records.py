"""What a run stores in S3 beside its chunks: the part manifests, the manifest and the pointer.

Each is a :class:`~flux_provider.records.Record` whose JSON form is the stored
object (:mod:`flux_provider.s3_layout` says where). The manifest is the contract
with every reader: a run is complete when it exists, and it lists each chunk with
its rows, bytes and CRC32, the export's columns, the Hive encoding and the day.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from flux_provider.columns import Column
from flux_provider.encoding import HiveTextEncoding
from flux_provider.records import Record
from flux_provider.s3_layout import MANIFEST


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class Chunk(Record):
    """One uploaded chunk: its key, rows, bytes (as stored and before compression) and CRC32."""

    KIND = "flux.chunk"
    TAGGED = False

    key: str = ""
    rows: int = 0
    bytes: int = 0
    raw_bytes: int = 0
    crc32: str = ""  # 8 hex digits, checked by S3 on upload and kept as the object's flux-crc32
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ExportSource(Record):
    """What a run (or a part) was uploaded from: the export's file (None when streamed) and host, its rows and
    bytes, the engine and tool that wrote it, and its format."""

    KIND = "flux.export-source"
    TAGGED = False  # versioned by the record it is in

    path: str | None = None
    host: str | None = None
    rows: int | None = None
    bytes: int | None = None
    engine: str | None = None
    tool: str | None = None
    format: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, export) -> ExportSource:
        """The source facts of ``export`` (an :class:`~flux_provider.handoffs.ExportResult`)."""
        return cls(**{f.name: getattr(export, f.name) for f in dataclasses.fields(cls) if f.name != "extra"})


@dataclass(frozen=True)
class PartSummary(Record):
    """One part of a split run, as the run's manifest lists it."""

    KIND = "flux.part-summary"
    TAGGED = False
    NESTED = {"source": ExportSource}

    part: str = ""
    rows: int = 0
    chunks: int = 0
    source: ExportSource | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Contents(Record):
    """What a manifest and a part manifest both record."""

    VERSION_KEY = "format"
    NESTED = {"chunks": Chunk, "columns": Column, "encoding": HiveTextEncoding, "source": ExportSource}

    run_key: str | None = None
    dataset: str | None = None
    bucket: str = ""
    prefix: str = ""
    location: str = ""
    rows: int = 0
    bytes: int = 0
    raw_bytes: int = 0
    chunks: list[Chunk] = field(default_factory=list)
    created_at: str = ""
    columns: list[Column] | None = None
    encoding: HiveTextEncoding | None = None
    compression: str | None = None
    source: ExportSource | None = None
    day: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def summing(cls, bucket: str, prefix: str, chunks: list[Chunk], **fields):
        """The record of ``chunks`` (sorted by key) under ``prefix``, with their totals."""
        chunks = sorted(chunks, key=lambda c: c.key)
        return cls(
            bucket=bucket,
            prefix=prefix,
            location=f"s3://{bucket}/{prefix}",
            rows=sum(c.rows for c in chunks),
            bytes=sum(c.bytes for c in chunks),
            raw_bytes=sum(c.raw_bytes for c in chunks),
            chunks=chunks,
            created_at=utc_now(),
            **fields,
        )


@dataclass(frozen=True)
class PartManifest(_Contents):
    """``runs/<generation>/_parts/<part>.json``: one part of a split run is complete."""

    KIND = "flux-hive-text-part"

    part: str = ""


@dataclass(frozen=True)
class Manifest(_Contents):
    """``runs/<generation>/_manifest.json``: the run is complete (and, once pointed at, published)."""

    KIND = "flux-hive-text"
    NESTED = {
        "chunks": Chunk,
        "parts": PartSummary,
        "columns": Column,
        "encoding": HiveTextEncoding,
        "source": ExportSource,
    }
    JSON_NAMES = {"attempt": "try"}

    attempt: int | None = None  # the task try that wrote it
    parts: list[PartSummary] | None = None  # a split run's parts


@dataclass(frozen=True)
class Pointer(Record):
    """``_published.json``: which generation of the data set is current."""

    KIND = "flux-pointer"
    VERSION_KEY = "format"
    JSON_NAMES = {"attempt": "try"}

    run_key: str | None = None
    prefix: str = ""
    manifest: str = ""
    rows: int = 0
    day: str | None = None
    attempt: int | None = None
    published_at: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def to(cls, manifest: Manifest) -> Pointer:
        """The pointer at ``manifest``'s run."""
        return cls(
            run_key=manifest.run_key,
            prefix=manifest.prefix,
            manifest=manifest.prefix + MANIFEST,
            rows=manifest.rows,
            day=manifest.day,
            attempt=manifest.attempt,
            published_at=manifest.created_at,
        )


__all__ = ["Chunk", "Manifest", "PartManifest", "PartSummary", "Pointer"]
