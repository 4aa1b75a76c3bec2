"""A data set as its XML spec declares it: validated, typed, Airflow-free."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flux_provider.calendars import Calendar
from flux_provider.encoding import Chunking
from flux_provider.identifiers import dag_id_for
from flux_provider.retention import LandingRule
from flux_provider.rules import Rule


@dataclass(frozen=True)
class Split:
    """``<split>``: cut the export into parts by key range (``parts``) or time window (``every``)."""

    column: str
    parts: int | None = None
    every: str | None = None  # day | hour


@dataclass(frozen=True)
class Source:
    connection: str
    schema: str | None
    table: str | None
    query: str | None
    count_query: str | None
    split: Split | None = None
    queries: tuple[tuple[str, str], ...] = ()  # several named <query>: one part each

    @property
    def is_split(self) -> bool:
        return self.split is not None or bool(self.queries)


@dataclass(frozen=True)
class Export:
    engine: str = "auto"
    mode: str = "streaming"  # streaming: one export_upload task; file: export then upload
    batch_size: int = 10_000
    timeout_minutes: float | None = None
    queue: str | None = None  # Airflow queue of the export-side tasks (same host for mode="file")


@dataclass(frozen=True)
class HivePartition:
    name: str
    type: str = "STRING"
    value: str | None = None  # static (templated) value; None: dynamic


@dataclass(frozen=True)
class Hive:
    connection: str
    metastore: str
    database: str
    staging_table: str
    target_table: str
    format: str
    columns: dict[str, str]
    partitions: tuple[HivePartition, ...]
    transform_sql: str
    transform_file: Path | None
    expect_rows: str | int | None = None
    min_rows: int | None = None
    create_database: bool = False
    timestamp_precision: int = 6


@dataclass(frozen=True)
class Refresh:
    latest_view: str | None = None
    retention_days: int | None = None
    retention_column: str | None = None
    purge: bool = False
    analyze: bool = False
    repair: bool = False


@dataclass(frozen=True)
class Schedule:
    cron: str | None = None  # a cron expression or a preset (@daily); None with after=() is manual
    after: tuple[str, ...] = ()  # run when these data sets' Assets update
    start: str = "2026-01-01"
    catchup: bool = False
    timezone: str = "UTC"
    max_active_runs: int = 1  # each run has its own staging view; their queries share the data set's pool
    grain: str | None = None  # day, hour or none (flux_provider.specs.partitions); None: decided from the spec
    require: str = "partition"  # with after: "partition" (the same partition of each) or "update" (any event)
    priority: int = 0  # 0-9: a fleet's higher-priority data sets start first (flux_provider.specs.priorities)


@dataclass(frozen=True)
class Deadline:
    """When a run must have finished: ``finish_by`` (HH:MM in ``timezone``, the first at or after the run was
    due) or ``within_minutes`` of being queued."""

    finish_by: str | None = None
    within_minutes: float | None = None
    timezone: str = "UTC"


@dataclass(frozen=True)
class Throttle:
    pool: str
    initial: int = 2
    min: int = 1
    max: int = 8
    load_classes: tuple[str, ...] | None = None  # None: the taxonomy's load classes
    algorithm: str = "gradient"  # the limit the controller adapts the pool with (throttle.limits.ALGORITHMS)
    source: str | None = None  # the source whose budget its pool shares (default: the source's connection)
    connection: str | None = None  # the Airflow connection the source's state is read through
    weight: float = 1.0  # its share of the source's budget when the budget binds
    floor: int = 0  # the slots it keeps whatever its source's other data sets ask


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    path: Path
    owner: str
    description: str
    emails: tuple[str, ...]
    webhooks: tuple[str, ...]
    source: Source
    export: Export
    chunking: Chunking
    s3_location: str
    s3_connection: str
    hive: Hive
    refresh: Refresh
    schedule: Schedule
    throttle: Throttle
    rules: tuple[Rule, ...]
    deadline: Deadline | None = None
    calendar: Calendar | None = None  # holidays and maintenance windows (flux_provider.calendars)
    landing: LandingRule = LandingRule()  # what of runs/ and the raw staging table outlives the runs

    @property
    def dag_id(self) -> str:
        return dag_id_for(self.name)
