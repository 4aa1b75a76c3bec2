"""The delimiters, NULL marker and escape of a Hive LazySimpleSerDe text table, and how an upload cuts its rows
into chunks: records, with no Arrow and no Airflow (DAG files build them at parse time;
:mod:`flux_provider.formats.hive_text` encodes with them, a run's manifest keeps the encoding).
:class:`Chunking` is the one definition of both that a spec's ``<chunking>``, the plan and the upload operators
share; its defaults are the XSD's (``tests/unit/specs/test_xsd_defaults.py``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

from flux_provider.records import Record


@dataclass(frozen=True)
class HiveTextEncoding(Record):
    """A run's encoding, as its manifest and the upload's result record it (``field``, ``collection``,
    ``map_key``, ``null``). Rows end with ``ROW`` and values escape with ``ESCAPE``: Hive's text tables allow
    no other, so they are constants, not fields (manifests written before kept them, in ``extra`` now)."""

    KIND = "flux.hive-text-encoding"
    TAGGED = False  # versioned by the record it is in
    ROW: ClassVar[str] = "\n"
    ESCAPE: ClassVar[str] = "\\"

    field: str = "\x01"
    collection: str = "\x02"
    map_key: str = "\x03"
    null: str = "\\N"
    extra: dict = dataclasses.field(default_factory=dict)  # (``field`` is a delimiter's name here)

    def __post_init__(self):
        delimiters = [self.field, self.collection, self.map_key]
        if any(len(d) != 1 for d in delimiters) or len(set(delimiters)) != 3:
            raise ValueError(f"Hive delimiters must be three distinct single characters, got {delimiters!r}")

    def escapes(self) -> list[tuple[bytes, bytes]]:
        """(byte, its escape) inside values, the backslash first."""
        delimiters = [d.encode() for d in (self.field, self.collection, self.map_key)]
        return [(b"\\", b"\\\\")] + [(d, b"\\" + d) for d in delimiters] + [(b"\n", b"\\n"), (b"\r", b"\\r")]


@dataclass(frozen=True)
class Chunking:
    """How an upload cuts rows into chunks and encodes them: a chunk closes at ``chunk_mb`` MB of Hive text
    (before compression) or ``chunk_rows`` rows, whichever comes first; ``compression`` is ``"gzip"`` (each
    chunk a ``.hive.gz``) or None; the delimiters and NULL marker are Hive's (``ROW FORMAT DELIMITED``)."""

    chunk_mb: float | None = 32
    chunk_rows: int | None = None
    compression: Literal["gzip"] | None = "gzip"
    field_delimiter: str = "\x01"
    collection_delimiter: str = "\x02"
    map_key_delimiter: str = "\x03"
    null_format: str = "\\N"

    def __post_init__(self):
        if self.compression not in (None, "gzip"):
            raise ValueError(f"compression {self.compression!r} is not None or 'gzip'")
        if self.chunk_mb is None and self.chunk_rows is None:
            raise ValueError("a chunk needs a limit: chunk_mb, chunk_rows or both")

    def encoding(self) -> HiveTextEncoding:
        return HiveTextEncoding(
            field=self.field_delimiter,
            collection=self.collection_delimiter,
            map_key=self.map_key_delimiter,
            null=self.null_format,
        )

    @property
    def extension(self) -> str:
        return ".hive.gz" if self.compression else ".hive"
