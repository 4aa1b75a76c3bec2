"""What each step hands the next, as small typed records (the XCom ``return_value`` of each step).

Each record is a frozen dataclass with ``to_xcom()`` (the JSON-ready dict Airflow
stores; its keys are the public XCom format, documented in the README) and
``from_xcom(value)`` (accepts that dict, its JSON text, or None). Readers (the next
operator, the run report, the dashboard API, the demo) use the fields instead of
repeating key names; keys a record does not know are kept in ``extra``, so a newer
writer never breaks an older reader.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T", bound="_Record")


class _Record:
    """``to_xcom`` / ``from_xcom`` for the dataclasses below."""

    extra: dict

    def to_xcom(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        if isinstance(out.get("export"), _Record):
            out["export"] = out["export"].to_xcom()
        return {**out, **self.extra}

    @classmethod
    def from_xcom(cls: type[T], value: Any) -> T | None:
        if value is None:
            return None
        if isinstance(value, (str, bytes)):
            value = json.loads(value)
        if not isinstance(value, dict):
            raise TypeError(f"{cls.__name__}: expected the step's XCom dict, got {type(value).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in value.items() if k in names}
        return cls(**known, extra={k: v for k, v in value.items() if k not in names})


@dataclass(frozen=True)
class ExportResult(_Record):
    """Step 1 -> 2: the export file (``path`` None when streamed) and how to read it."""

    dataset: str | None = None
    path: str | None = None
    host: str | None = None
    rows: int | None = None
    bytes: int | None = None
    format: str | None = None
    field_terminator: str | None = None
    row_terminator: str | None = None
    null: str | None = None
    empty_string: str | None = None
    engine: str | None = None
    tool: str | None = None
    columns: list = field(default_factory=list)
    seconds: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class UploadResult(_Record):
    """Step 2 -> 3: the published run in S3 (streaming mode also carries its ``export``)."""

    dataset: str | None = None
    location: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    manifest: str | None = None
    rows: int | None = None
    chunks: int | None = None
    chunks_reused: int | None = None
    bytes: int | None = None
    raw_bytes: int | None = None
    compression: str | None = None
    encoding: dict = field(default_factory=dict)
    columns: list = field(default_factory=list)
    seconds: float | None = None
    export: ExportResult | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_xcom(cls, value: Any) -> UploadResult | None:
        record = super().from_xcom(value)
        if record is not None and isinstance(record.export, dict):
            record = dataclasses.replace(record, export=ExportResult.from_xcom(record.export))
        return record


@dataclass(frozen=True)
class TransformResult(_Record):
    """Step 3 -> 4: rows per stage and the partitions written."""

    dataset: str | None = None
    run: str | None = None
    staging: str | None = None
    target: str | None = None
    database: str | None = None
    table: str | None = None
    manifest_rows: int | None = None
    staging_rows: int | None = None
    target_rows: int | None = None
    partitions: list = field(default_factory=list)
    columns: dict = field(default_factory=dict)
    statements: list = field(default_factory=list)
    seconds: float | None = None
    extra: dict = field(default_factory=dict)
