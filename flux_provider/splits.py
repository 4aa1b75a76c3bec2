"""One export split into parts, each one query: key ranges, time windows or named queries.

A data set's ``<split>`` (or several ``<query name=...>``) becomes a list of
:class:`Part`: a name (the mapped task's label and the S3 chunk names), the
SELECT that exports it and, when the data set reconciles (``<countQuery>``), the
COUNT that checks it. The parts of a key-range split cover every row exactly
once: the first range is open below, the last open above (rows that arrive
between planning and exporting are not lost), and a nullable column's NULLs
are a part of their own.

Date/time bounds are written as ``CONVERT(<type>, 'yyyy-mm-dd hh:mi:ss', 120)``
(ODBC canonical: read the same whatever the session's language or DATEFORMAT).
Pure: no Airflow, no connection (the plan operator reads the bounds).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from flux_provider.identifiers import sqlserver_identifier
from flux_provider.records import Record

#: At most this many parts per run: each is a task instance and a query against the source.
MAX_PARTS = 256
INTEGER_TYPES = ("bigint", "int", "smallint", "tinyint")
TIME_TYPES = ("date", "datetime", "datetime2", "smalldatetime")
EVERY = {"day": dt.timedelta(days=1), "hour": dt.timedelta(hours=1)}
NULL_PART = "pnull"


@dataclass(frozen=True)
class Part(Record):
    """One query of a split export: what the plan task hands each mapped export task.

    ``prefix``: the run's S3 prefix, which the plan fixes so that every part (and every retry of a part)
    uploads into the same run."""

    KIND = "flux.split-part"

    name: str = ""
    sql: str = ""
    count_sql: str | None = None
    predicate: str | None = None  # the WHERE of a range or window part (None: an explicit query)
    prefix: str | None = None
    extra: dict = field(default_factory=dict)


def part_names(count: int) -> list[str]:
    width = max(2, len(str(count - 1)))
    return [f"p{i:0{width}d}" for i in range(count)]


def integer_bounds(low: int, high: int, parts: int) -> list[int]:
    """The inner boundaries of ``parts`` ranges over ``[low, high]`` (fewer when there are fewer keys)."""
    span = high - low + 1
    return sorted({low + span * i // parts for i in range(1, parts)} - {low})


def time_bounds(low: dt.datetime, high: dt.datetime, parts: int, *, whole_days: bool) -> list[dt.datetime]:
    """Inner boundaries over ``[low, high]``, on whole seconds (whole days for a DATE column)."""
    if whole_days:
        days = integer_bounds(low.toordinal(), high.toordinal(), parts)
        return [dt.datetime.fromordinal(day) for day in days]
    step = (high - low) / parts
    moments = {(low + step * i).replace(microsecond=0) for i in range(1, parts)}
    return sorted(m for m in moments if m > low)


def windows(start: dt.datetime, end: dt.datetime, every: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """``[start, end)`` cut at every day or hour (the last window may be shorter)."""
    step, out, moment = EVERY[every], [], start
    while moment < end:
        out.append((moment, min(moment + step, end)))
        moment += step
    return out


def literal(value, type_name: str) -> str:
    """``value`` as a T-SQL literal of the column's type."""
    if type_name in INTEGER_TYPES:
        return str(int(value))
    if type_name == "date":
        return f"CONVERT(date, '{value.year:04d}-{value.month:02d}-{value.day:02d}', 23)"
    clock = f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    return f"CONVERT({type_name}, '{value.year:04d}-{value.month:02d}-{value.day:02d} {clock}', 120)"


def source_of(*, table: str | None = None, query: str | None = None) -> str:
    """What a part selects from: a validated, quoted table or the query as a derived table."""
    return table if table else f"({query}) AS flux_split"


def column(name: str, *, dataset: str | None = None) -> str:
    return f"[{sqlserver_identifier(name, 'split column', dataset=dataset)}]"


def range_parts(
    source: str, quoted_column: str, bounds: list, type_name: str, *, nullable: bool, count: bool
) -> list[Part]:
    """Parts ``< b1``, ``>= b1 AND < b2``, ..., ``>= bn`` (one ``IS NOT NULL`` part without bounds), then NULLs."""
    edges = [None, *bounds, None]
    predicates = []
    for lower, upper in zip(edges, edges[1:]):
        terms = []
        if lower is not None:
            terms.append(f"{quoted_column} >= {literal(lower, type_name)}")
        if upper is not None:
            terms.append(f"{quoted_column} < {literal(upper, type_name)}")
        predicates.append(" AND ".join(terms) or f"{quoted_column} IS NOT NULL")
    named = list(zip(part_names(len(predicates)), predicates))
    if nullable:
        named.append((NULL_PART, f"{quoted_column} IS NULL"))
    return [_part(name, source, predicate, count) for name, predicate in named]


def window_parts(
    source: str, quoted_column: str, spans: list[tuple[dt.datetime, dt.datetime]], type_name: str, *, count: bool
) -> list[Part]:
    names = part_names(len(spans))
    return [
        _part(
            name,
            source,
            f"{quoted_column} >= {literal(start, type_name)} AND {quoted_column} < {literal(end, type_name)}",
            count,
        )
        for name, (start, end) in zip(names, spans)
    ]


def query_parts(queries: list[tuple[str, str]], *, count: bool) -> list[Part]:
    return [Part(name, sql, f"SELECT COUNT(*) FROM ({sql}) AS flux_part" if count else None) for name, sql in queries]


def _part(name: str, source: str, predicate: str, count: bool) -> Part:
    return Part(
        name,
        f"SELECT * FROM {source} WHERE {predicate}",
        f"SELECT COUNT(*) FROM {source} WHERE {predicate}" if count else None,
        predicate,
    )
