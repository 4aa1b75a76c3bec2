"""What each task of a plan gives its operator: one frozen record per kind of task.

A record's fields are its operator's keyword parameters, by name and meaning, so the renderer hands them over
as they are (:meth:`TaskArgs.kwargs`) and a test checks each field against the operator's signature
(``tests/unit/specs/test_plan.py``). The chunking travels as the spec's
:class:`~flux_provider.encoding.Chunking` record and the landing rule as
:class:`~flux_provider.retention.Landing`. No Airflow here: a plan is data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from flux_provider.encoding import Chunking
from flux_provider.retention import Landing

Engine = Literal["auto", "bcp", "dbapi"]


@dataclass(frozen=True)
class TaskArgs:
    """The base of every kind's arguments."""

    #: operator parameters that are left out when None (the operator's own default then applies)
    UNSET_WHEN_NONE = frozenset({"queue", "execution_timeout"})

    def kwargs(self) -> dict[str, Any]:
        """The operator's keyword arguments: each field under its own name."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in values.items() if not (v is None and k in self.UNSET_WHEN_NONE)}


@dataclass(frozen=True)
class SourceArgs(TaskArgs):
    """How a task reads the source (every export side)."""

    mssql_conn_id: str
    engine: Engine
    batch_size: int
    execution_timeout: timedelta | None
    queue: str | None  # the export-side tasks' queue: with mode="file" the export and its upload share a host


@dataclass(frozen=True)
class ExportArgs(SourceArgs):
    """``BcpExportOperator``: the whole table or query to a staging file."""

    schema: str | None
    table: str | None
    sql: str | None
    count_sql: str | None


@dataclass(frozen=True)
class UploadArgs(TaskArgs):
    """``S3ChunkUploadOperator``: the export task's file, chunked, to the data set's S3 location."""

    s3_location: str
    aws_conn_id: str
    export_task_id: str
    chunking: Chunking
    queue: str | None


@dataclass(frozen=True)
class ExportUploadArgs(ExportArgs):
    """``BcpToS3Operator``: export streamed into the upload, no file between."""

    s3_location: str
    aws_conn_id: str
    upload_options: Chunking


@dataclass(frozen=True)
class PartArgs(SourceArgs):
    """``BcpToS3Operator`` mapped over the split plan: one part each (its query comes with the part)."""

    s3_location: str
    aws_conn_id: str
    upload_options: Chunking


@dataclass(frozen=True)
class SplitPlanArgs(TaskArgs):
    """``SplitPlanOperator``: the parts of a split export."""

    schema: str | None
    table: str | None
    sql: str | None
    queries: tuple[tuple[str, str], ...] | None
    column: str | None
    parts: int | None
    every: str | None
    reconcile: bool
    mssql_conn_id: str
    s3_location: str
    aws_conn_id: str


@dataclass(frozen=True)
class PublishArgs(TaskArgs):
    """``PublishRunOperator``: the split run's parts, published as one run."""

    plan_task_id: str
    count_sql: str | None  # named queries may overlap: their total is checked against the count query
    mssql_conn_id: str
    s3_location: str
    aws_conn_id: str


@dataclass(frozen=True)
class TransformArgs(TaskArgs):
    """``HiveTransformOperator``: the published run through the staging table, transformed into the target."""

    upload_task_id: str
    database: str
    staging_table: str
    target_table: str
    sql: str
    partition: dict[str, str]  # static partition values (templated)
    dynamic_partitions: tuple[str, ...]
    target_columns: dict[str, str] | None
    partition_types: dict[str, str] | None
    target_format: str
    expect_rows: str | int | None
    min_rows: int | None
    hiveserver2_conn_id: str
    aws_conn_id: str
    timestamp_precision: int
    create_database: bool
    landing: Landing | None  # pruned after the transform when it is the DAG's last task


@dataclass(frozen=True)
class RefreshArgs(TaskArgs):
    """``PartitionRefreshOperator``: the target's partitions refreshed, the latest view, retention."""

    database: str
    table: str
    transform_task_id: str
    repair: bool
    latest_view: str | None
    retention_days: int | None
    retention_column: str | None
    purge: bool
    analyze: bool
    hiveserver2_conn_id: str
    metastore_conn_id: str
    aws_conn_id: str
    landing: Landing


#: Each kind of task's arguments.
ARGS = {
    "export": ExportArgs,
    "upload": UploadArgs,
    "export_upload": ExportUploadArgs,
    "plan": SplitPlanArgs,
    "export_upload_part": PartArgs,
    "publish": PublishArgs,
    "transform": TransformArgs,
    "refresh": RefreshArgs,
}

AnyTaskArgs = (
    ExportArgs | UploadArgs | ExportUploadArgs | SplitPlanArgs | PartArgs | PublishArgs | TransformArgs | RefreshArgs
)

__all__ = [
    "ARGS",
    "AnyTaskArgs",
    "ExportArgs",
    "ExportUploadArgs",
    "PartArgs",
    "PublishArgs",
    "RefreshArgs",
    "SplitPlanArgs",
    "TaskArgs",
    "TransformArgs",
    "UploadArgs",
]
