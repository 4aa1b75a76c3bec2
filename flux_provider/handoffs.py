"""What each step hands the next: the XCom ``return_value`` of each step, as typed records.

Each is a :class:`~flux_provider.records.Record`: its ``to_json()`` is the dict
Airflow stores (its keys are the public XCom format, see the operators' docs), and
``from_json(value)`` reads that dict, its JSON text, or None. Readers (the next
operator, the run report, the dashboard API, the demo) use the fields instead of
repeating key names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flux_provider.columns import Column
from flux_provider.encoding import HiveTextEncoding
from flux_provider.records import Record
from flux_provider.retention import LandingOutcome
from flux_provider.run_records import PartSummary


@dataclass(frozen=True)
class ExportResult(Record):
    """Step 1 -> 2: the export file (``path`` None when streamed) and how to read it."""

    KIND = "flux.export"
    NESTED = {"columns": Column}

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
    columns: list[Column] = field(default_factory=list)
    seconds: float | None = None
    # a CSV file handed to the upload (``format="csv"``): its header line, delimiter and whether "" is NULL
    header: bool = False
    delimiter: str | None = None
    empty_is_null: bool = True
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class UploadResult(Record):
    """Step 2 -> 3: the published run in S3 (streaming mode also carries its ``export``).

    This is also what publishing returns: the upload operators and ``PublishRunOperator``."""

    KIND = "flux.upload"
    NESTED = {"export": ExportResult, "parts": PartSummary, "columns": Column, "encoding": HiveTextEncoding}

    dataset: str | None  # required (None only for an upload outside a data set)
    location: str | None = None
    bucket: str
    prefix: str
    manifest: str  # the run's manifest (a part manifest for one part of a split run)
    rows: int
    chunks: int | None = None
    chunks_reused: int | None = None
    bytes: int | None = None
    raw_bytes: int | None = None
    compression: str | None = None
    encoding: HiveTextEncoding | None = None
    columns: list[Column] = field(default_factory=list)
    seconds: float | None = None
    export: ExportResult | None = None
    part: str | None = None  # one part of a split run, not published on its own
    parts: list[PartSummary] = field(default_factory=list)  # a published split run's parts
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WrittenPartition(Record):
    """A partition of the target the transform wrote: its name (``day=2024-01-01``), values and rows."""

    KIND = "flux.written-partition"
    TAGGED = False  # versioned by the record it is in

    name: str
    values: dict[str, str]
    rows: int
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class HiveColumn(Record):
    """A column as Hive reads it: its name and Hive type (``DECIMAL(19,2)``)."""

    KIND = "flux.hive-column"
    TAGGED = False  # versioned by the record it is in

    name: str
    type: str
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TransformResult(Record):
    """Step 3 -> 4: rows per stage, the Hive partitions written and the staged columns.

    Version 2 lists ``columns`` as ``[{"name", "type"}]``; version 1 wrote ``{name: type}``, which it still reads.
    """

    KIND = "flux.transform"
    VERSION = 2
    NESTED = {"partitions": WrittenPartition, "landing": LandingOutcome, "columns": HiveColumn}

    dataset: str | None  # required (None only for a transform outside a data set)
    run: str  # the generation the transform read (its flux_run partition)
    staging: str | None = None
    target: str
    database: str | None = None
    table: str | None = None
    manifest_rows: int
    staging_rows: int
    target_rows: int
    partitions: list[WrittenPartition] = field(default_factory=list)
    columns: list[HiveColumn] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    seconds: float | None = None
    landing: LandingOutcome | None = None  # what the landing rule removed and kept once the load was done
    extra: dict = field(default_factory=dict)

    @classmethod
    def _nested(cls, name: str, item: Any) -> Any:
        if name == "columns" and isinstance(item, dict):  # version 1
            return [HiveColumn(str(k), str(v)) for k, v in item.items()]
        return super()._nested(name, item)


@dataclass(frozen=True)
class RefreshResult(Record):
    """Step 4's result: the table's Hive partitions after the refresh, what changed, and where "latest" points.

    ``partitions`` is how many the table has; ``added`` (added or moved), ``dropped`` and ``touched`` name them.
    """

    KIND = "flux.refresh"
    NESTED = {"landing": LandingOutcome}

    dataset: str
    table: str
    partitions: int
    added: list[str]
    dropped: list[str]
    touched: list[str]
    latest: str | None
    latest_view: str | None
    statements: list[str] = field(default_factory=list)
    leftovers_removed: int = 0
    landing: LandingOutcome | None = None
    seconds: float | None = None
    extra: dict = field(default_factory=dict)
