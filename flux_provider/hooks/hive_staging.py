"""A published run as Hive reads it: the raw external table (one ``flux_run`` partition per run), the run's
partition and the views over it, made to match the run's manifest.

The raw table carries its DDL's fingerprint (``flux.ddl``): when the export's columns or encoding change it is
dropped and made again (external: no data is deleted). The DDL itself is built by
:mod:`flux_provider.formats.hive_ddl`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flux_provider.errors import ErrorClass, FluxError, flux_error
from flux_provider.formats import hive_ddl
from flux_provider.hooks.hive_session import HiveSessionHook
from flux_provider.identifiers import hive_identifier
from flux_provider.run_records import Manifest
from flux_provider.s3_layout import DatasetLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Staging:
    """The staging objects of one data set in ``database`` (quoted names): ``raw`` the external table, ``view``
    the one this run's transform reads, ``latest`` the view people query (the last run transformed)."""

    dataset: str
    database: str
    raw: str
    view: str
    latest: str


def staging_columns(manifest: Manifest, dataset: str, *, timestamp_precision: int) -> list[hive_ddl.StagingColumn]:
    """The run's columns as Hive stages them (exact types; a lossy one is logged)."""
    columns = []
    for column in manifest.columns or []:
        hive_identifier(column.name, f"column of the export ({column.system_type_name})", dataset=dataset)
        staged = hive_ddl.staging_column(column, timestamp_precision=timestamp_precision)
        if staged.lossy_note:
            log.warning("data set %s: column %s: %s", dataset, column.name, staged.lossy_note)
        columns.append(staged)
    lowered = [c.name.lower() for c in columns]
    if len(set(lowered)) != len(lowered):
        raise flux_error(
            f"the export has columns that differ only in case ({lowered}); Hive names ignore case",
            error_class=ErrorClass.CONFIG,
            dataset=dataset,
            step="transform",
        )
    return columns


def ensure_staging(
    hive: HiveSessionHook, staging: Staging, manifest: Manifest, columns: list, *, databases: tuple[str, ...] = ()
) -> str:
    """Make the raw table, the run's partition and the views; the run's name. ``databases`` are made if missing
    (the staging one is known to exist once the raw table does)."""
    layout = DatasetLayout.generation_in(manifest.bucket, manifest.prefix)
    ddl = hive_ddl.raw_table_ddl(
        staging.raw, columns, manifest.encoding, f"s3a://{layout.bucket}/{layout.dataset.runs_prefix}"
    )
    current = fingerprint(hive, staging.raw)
    for database in (d for d in databases if current is None or d != staging.database):
        hive.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    if current != hive_ddl.ddl_fingerprint(ddl):
        if current is not None:
            log.info(
                "data set %s: the export's columns or encoding changed: re-creating %s (external: no data is deleted)",
                staging.dataset,
                staging.raw,
            )
            hive.execute(f"DROP TABLE IF EXISTS {staging.raw}")
        try:
            hive.execute(ddl, what=f"create {staging.raw}")
        except FluxError:
            if fingerprint(hive, staging.raw) != hive_ddl.ddl_fingerprint(ddl):
                raise
            # another run of the data set created the same table at the same moment
    run = layout.name
    hive.execute(
        f"ALTER TABLE {staging.raw} ADD IF NOT EXISTS {hive_ddl.partition_clause({hive_ddl.RUN_PARTITION: run})} "
        f"LOCATION {hive_ddl.sql_string(f's3a://{layout.bucket}/{layout.prefix}')}"
    )
    hive.execute(
        hive_ddl.staging_view_ddl(staging.view, staging.raw, columns, run), what=f"point {staging.view} at run {run}"
    )
    if staging.view != staging.latest:
        try:
            hive.execute(hive_ddl.staging_view_ddl(staging.latest, staging.raw, columns, run))
        except FluxError as exc:  # a convenience view: another run may be replacing it right now
            log.warning("data set %s: could not point %s at run %s: %s", staging.dataset, staging.latest, run, exc)
    return run


def fingerprint(hive: HiveSessionHook, raw: str) -> str | None:
    """The ``flux.ddl`` property of the raw table, or None when the table does not exist."""
    try:
        rows = hive.execute(f"SHOW TBLPROPERTIES {raw}", what=f"read {raw} properties")
    except FluxError as exc:
        if exc.error_class is ErrorClass.MISSING_OBJECT:
            return None
        raise
    return dict((r[0], r[1]) for r in rows if len(r) >= 2).get("flux.ddl", "")


__all__ = ["Staging", "ensure_staging", "fingerprint", "staging_columns"]
