"""The statements a partition refresh runs, and its pure decisions: the newest partition and the expired ones.

Pure: no session, no Airflow. :class:`~flux_provider.operators.partition_refresh.PartitionRefreshOperator`
runs them through :class:`~flux_provider.hooks.hive_session.HiveSessionHook`; the unit tests read them as text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from flux_provider.error_taxonomy import ErrorClass, FluxError
from flux_provider.formats.hive_ddl import partition_clause, partition_predicate, sql_string

NUMERIC = ("tinyint", "smallint", "int", "bigint", "decimal", "double", "float")


def repair(table: str) -> str:
    return f"MSCK REPAIR TABLE {table}"


def add_partition(table: str, values: Mapping[str, str], location: str | None) -> str:
    where = f" LOCATION {sql_string(location)}" if location else ""
    return f"ALTER TABLE {table} ADD IF NOT EXISTS {partition_clause(dict(values))}{where}"


def move_partition(table: str, values: Mapping[str, str], location: str) -> str:
    return f"ALTER TABLE {table} {partition_clause(dict(values))} SET LOCATION {sql_string(location)}"


def point_view(view: str, table: str, values: Mapping[str, str]) -> str:
    """One metastore call: readers of ``view`` see the old partition or the new one, never a mix."""
    return f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {table} WHERE {partition_predicate(dict(values))}"


def drop_partition(table: str, values: Mapping[str, str], *, purge: bool) -> str:
    return f"ALTER TABLE {table} DROP IF EXISTS {partition_clause(dict(values))}" + (" PURGE" if purge else "")


def drop_generations(raw_table: str, generations: Iterable[str]) -> str:
    """One statement: the raw staging table's ``flux_run`` partitions of the generations landing retention
    removes."""
    from flux_provider.formats.hive_ddl import RUN_PARTITION

    clauses = ", ".join(partition_clause({RUN_PARTITION: g}) for g in generations)
    return f"ALTER TABLE {raw_table} DROP IF EXISTS {clauses}"


def analyze(table: str, values: Mapping[str, str]) -> str:
    return f"ANALYZE TABLE {table} {partition_clause(dict(values))} COMPUTE STATISTICS"


def sort_key(values: Mapping[str, str], keys: Iterable[tuple[str, str]]) -> tuple:
    """Order of partition values: numbers (by the key's Hive type) as numbers, the rest as text."""
    out = []
    for name, type_name in keys:
        value = values[name]
        if type_name.split("(")[0] in NUMERIC:
            try:
                out.append((0, float(value), ""))
                continue
            except ValueError:
                pass
        out.append((1, 0.0, str(value)))
    return tuple(out)


def day(value: str, what: str) -> dt.date:
    """A date written ``YYYY-MM-DD`` or ``YYYYMMDD`` (a longer value: its first 10 characters)."""
    text = str(value).strip()[:10]
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text if fmt == "%Y-%m-%d" else text[:8], fmt).date()
        except ValueError:
            continue
    raise FluxError(
        f"{what}: {value!r} is not a date (YYYY-MM-DD or YYYYMMDD)", error_class=ErrorClass.CONFIG, step="refresh"
    )


def expired(values: Mapping[str, Mapping[str, str]], column: str, reference: str, days: int, keep: str | None):
    """The names of the partitions whose ``column`` date is more than ``days`` before ``reference``, but
    ``keep`` (the newest); KeyError names a partition that has no ``column``."""
    cutoff = day(reference, "retention_reference") - dt.timedelta(days=days)
    return sorted(
        name for name, part in values.items() if name != keep and day(part[column], f"partition {name}") < cutoff
    )


__all__ = [
    "add_partition",
    "analyze",
    "day",
    "drop_generations",
    "drop_partition",
    "expired",
    "move_partition",
    "point_view",
    "repair",
    "sort_key",
]
