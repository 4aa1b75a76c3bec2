"""The statements a transform runs against its target, built from plain values, and the readers of their answers.

Pure: no session, no Airflow. :class:`~flux_provider.operators.hive_transform.HiveTransformOperator` runs them
through :class:`~flux_provider.hooks.hive_session.HiveSessionHook`; the unit tests read them as text, and the
stack tests run them on Spark Thrift Server.

Every partitioned INSERT runs with all partition columns dynamic (static values become literal columns): Spark
then writes to a staging directory and swaps in each partition only after the job succeeded, so a failed
transform leaves the previous data. (A *static* INSERT OVERWRITE through Spark's own writer deletes the
partition before the job runs; its Hive-writer path keeps the data but shifts dates before 1582 in Parquet.)
Apache Hive ignores the ``spark.*`` key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flux_provider.formats.hive_ddl import (
    parse_partition_name,
    partition_clause,
    partition_name,
    partition_predicate,
    sql_string,
)

#: The session settings of an all-dynamic partitioned INSERT (see the module).
DYNAMIC_SETTINGS = (
    "hive.exec.dynamic.partition=true",
    "hive.exec.dynamic.partition.mode=nonstrict",
    "spark.sql.sources.partitionOverwriteMode=dynamic",
)


@dataclass(frozen=True)
class Target:
    """Where a transform writes: ``table`` (quoted, ```db`.`t```), its static partition values and its
    dynamic partition columns (filled from the SELECT's last columns)."""

    table: str
    partition: dict[str, str] = field(default_factory=dict)
    dynamic: tuple[str, ...] = ()

    @property
    def partition_columns(self) -> list[str]:
        return [*self.partition, *self.dynamic]

    @property
    def needs_select_columns(self) -> bool:
        """Whether :func:`insert` needs the SELECT's column names (static values go before dynamic columns)."""
        return bool(self.partition and self.dynamic)


def as_strings(columns: Sequence[str]) -> str:
    """Partition values as Hive names them (``CAST(... AS STRING)``), so counts key by partition name."""
    return ", ".join(f"CAST(`{c}` AS STRING)" for c in columns)


def create_target(table: str, columns: dict[str, str], partition_types: dict[str, str], stored_as: str) -> str:
    cols = ", ".join(f"`{k}` {v}" for k, v in columns.items())
    parts = ", ".join(f"`{k}` {v}" for k, v in partition_types.items())
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ({cols})"
        + (f" PARTITIONED BY ({parts})" if parts else "")
        + f" STORED AS {stored_as}"
    )


def count_rows(staging: str, sql: str, target: Target) -> str:
    """One statement: the staging view's rows, and the rows the transform yields (per dynamic partition)."""
    if not target.dynamic:
        return (
            f"SELECT flux_s.n, flux_t.n FROM (SELECT COUNT(*) AS n FROM {staging}) flux_s\n"
            f"CROSS JOIN (SELECT COUNT(*) AS n FROM (\n{sql}\n) flux_q) flux_t"
        )
    dyn = ", ".join(f"`{c}`" for c in target.dynamic)
    nulls = ", ".join("CAST(NULL AS STRING)" for _ in target.dynamic)
    return (
        f"SELECT 0 AS flux_k, {nulls}, COUNT(*) FROM {staging}\nUNION ALL\n"
        f"SELECT 1, {as_strings(target.dynamic)}, COUNT(*) FROM (\n{sql}\n) flux_q GROUP BY {dyn}"
    )


def read_counts(rows: list, target: Target) -> tuple[int, dict[str, int]]:
    """:func:`count_rows`'s answer: staging rows, and rows per written partition (``day=2024-01-01/...``;
    ``""`` if unpartitioned; none for a static partition the transform leaves empty)."""
    if not target.dynamic:
        staging, total = (int(v) for v in rows[0])
        return staging, ({partition_name(target.partition): total} if total or not target.partition else {})
    staging = sum(int(r[-1]) for r in rows if int(r[0]) == 0)
    output = {
        partition_name({**target.partition, **dict(zip(target.dynamic, r[1:-1]))}): int(r[-1])
        for r in rows
        if int(r[0]) == 1
    }
    return staging, output


def count_target(target: Target, partitions: list[str]) -> str | None:
    """One statement: the target's rows in each of ``partitions`` (None: a partitioned target, none written)."""
    columns = target.partition_columns
    if not columns:
        return f"SELECT COUNT(*) FROM {target.table}"
    if not partitions:
        return None
    where = " OR ".join(f"({partition_predicate(parse_partition_name(name))})" for name in partitions)
    grouped = ", ".join(f"`{c}`" for c in columns)
    return f"SELECT {as_strings(columns)}, COUNT(*) FROM {target.table} WHERE {where} GROUP BY {grouped}"


def read_target_counts(rows: list, target: Target, partitions: list[str]) -> dict[str, int]:
    """:func:`count_target`'s answer per partition name (a written partition with no row counts 0)."""
    columns = target.partition_columns
    if not columns:
        return {"": int(rows[0][0])}
    counts = dict.fromkeys(partitions, 0)
    counts.update({partition_name(dict(zip(columns, r[:-1]))): int(r[-1]) for r in rows})
    return counts


def insert(target: Target, sql: str, *, empty: bool, select_columns: Sequence[str] = ()) -> list[str]:
    """The statements that INSERT OVERWRITE the transform ``sql`` into ``target``: all-dynamic (see the
    module), but for a static partition the transform leaves ``empty``, which a static overwrite empties (as a
    rerun with no rows must). ``select_columns``: the SELECT's column names when
    :attr:`Target.needs_select_columns`."""
    if not target.partition_columns:
        return [f"INSERT OVERWRITE TABLE {target.table}\n{sql}"]
    if target.partition and empty:
        return [f"INSERT OVERWRITE TABLE {target.table} {partition_clause(target.partition)}\n{sql}"]
    select = sql
    if target.partition:
        # static values go in before the dynamic columns, which the SELECT ends with
        dynamic = {c.lower() for c in target.dynamic}
        data = [f"flux_q.`{n}`" for n in select_columns if n.lower() not in dynamic]
        exprs = (
            (data if target.dynamic else ["flux_q.*"])
            + [f"{sql_string(str(v))} AS `{k}`" for k, v in target.partition.items()]
            + [f"flux_q.`{c}`" for c in target.dynamic]
        )
        select = f"SELECT {', '.join(exprs)} FROM (\n{sql}\n) flux_q"
    clause = partition_clause(dict.fromkeys(target.partition_columns))
    return [*(f"SET {s}" for s in DYNAMIC_SETTINGS), f"INSERT OVERWRITE TABLE {target.table} {clause}\n{select}"]


__all__ = [
    "DYNAMIC_SETTINGS",
    "Target",
    "as_strings",
    "count_rows",
    "count_target",
    "create_target",
    "insert",
    "read_counts",
    "read_target_counts",
]
