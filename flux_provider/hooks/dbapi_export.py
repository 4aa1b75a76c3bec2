"""Export through any Airflow DbApiHook into the same file format bcp writes.

For machines without a bcp binary: MsSqlHook (pymssql) by default; PostgreSQL
and SQLite hooks work too. Memory is bounded by construction: at most
``fetch_size`` rows are held at once (pymssql streams rows off the wire;
PostgreSQL uses a server-side cursor), plus the file writer's buffer.
Column metadata comes from the server: ``sp_describe_first_result_set`` on SQL
Server, the driver's cursor description elsewhere.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from flux_provider.errors import ErrorClass, FluxError, classify_sqlserver, classify_text, flux_error
from flux_provider.formats.export_file import Column, TerminatorInData, renderer

log = logging.getLogger(__name__)


def _number_and_text(exc: BaseException) -> tuple[int | None, str]:
    """pymssql raises ``Error((number, b"text"))`` or ``Error(number, b"text")``; others just text."""
    args = getattr(exc, "args", ())
    if len(args) == 1 and isinstance(args[0], tuple):
        args = args[0]
    number = args[0] if args and isinstance(args[0], int) else None
    parts = [a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in args[1 if number else 0 :]]
    text = " ".join(parts).strip()
    client = re.match(r"DB-Lib error message (\d+)", text)
    if client:  # no server message came first: pymssql's number may be stale from an earlier error
        number = int(client.group(1))
    # DB-Library appends "DB-Lib error message N, severity S:" blocks: keep the server's own words first.
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith(("DB-Lib error message", "General SQL Server error"))
    ]
    first = lines[0] if lines else text
    return number, (first.split("DB-Lib error message")[0].strip() or text)


def classify_driver_error(exc: BaseException) -> tuple[ErrorClass, int | None, str]:
    """Class, server error number and message of a DB-API driver exception."""
    number, text = _number_and_text(exc)
    if number is not None:
        return classify_sqlserver(number, text), number, text
    return classify_text(text), None, text


def driver_error(exc: BaseException, what: str, dataset: str | None) -> FluxError:
    """A DB-API driver's exception as a classified FluxError of the export (server number and class)."""
    error_class, number, text = classify_driver_error(exc)
    prefix = f"Msg {number}: " if number is not None else ""
    return flux_error(
        f"{what}: {prefix}{text}", error_class=error_class, dataset=dataset, step="export", server_number=number
    )


def is_mssql(hook) -> bool:
    return getattr(hook, "conn_type", "") == "mssql" or type(hook).__name__ == "MsSqlHook"


# PostgreSQL type OIDs -> the SQL Server type names used in the export metadata.
_PG_TYPES = {
    20: "bigint",
    21: "smallint",
    23: "int",
    16: "bit",
    1700: "decimal",
    701: "float",
    700: "real",
    25: "nvarchar",
    1043: "nvarchar",
    1042: "nvarchar",
    17: "varbinary",
    1082: "date",
    1114: "datetime2",
    1184: "datetimeoffset",
    1083: "time",
}


def _from_description(d) -> Column:
    """A Column from a DB-API description entry (PostgreSQL OIDs mapped; SQLite reports no type)."""
    name, type_code, precision, scale = d[0], d[1], int(d[4] or 0), int(d[5] or 0)
    if type_code is None:
        type_name = ""
    elif isinstance(type_code, int):
        type_name = _PG_TYPES.get(type_code, str(type_code))
    else:
        type_name = str(type_code).lower()
    if type_name == "decimal":
        system = f"decimal({precision},{scale})"
    elif type_name in ("datetime2", "datetimeoffset", "time"):
        precision, scale = 0, 6
        system = f"{type_name}(6)"
    else:
        system = type_name
    return Column(
        name=name,
        type_name=type_name,
        system_type_name=system,
        precision=precision,
        scale=scale,
        nullable=d[6] is not False,
    )


def describe(hook, query: str, *, dataset: str | None = None) -> list[Column]:
    """The result columns of ``query`` with SQL types, precision and scale, as the server reports them."""
    conn = None
    try:
        conn = hook.get_conn()
        cursor = conn.cursor()
        if is_mssql(hook):
            cursor.execute("EXEC sp_describe_first_result_set @tsql = %s", (query,))
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row)) for row in cursor.fetchall()]
            return [
                Column.from_system_type(
                    r["name"],
                    r["system_type_name"],
                    nullable=bool(r["is_nullable"]),
                    max_length=int(r["max_length"] or 0),
                    precision=int(r["precision"] or 0),
                    scale=int(r["scale"] or 0),
                )
                for r in rows
                if not r.get("is_hidden")
            ]
        cursor.execute(f"SELECT * FROM ({query}) flux_describe WHERE 1 = 0")
        return [_from_description(d) for d in cursor.description]
    except FluxError:
        raise
    except Exception as exc:  # driver exceptions have no common base class across drivers
        raise driver_error(exc, "describing the export query failed", dataset) from exc
    finally:
        if conn is not None:
            conn.close()


class DbApiExportEngine:
    """Streams a query's rows into the export file format."""

    def __init__(
        self, hook, *, fetch_size: int = 10_000, log_every: float = 10.0, clock: Callable[[], float] = time.monotonic
    ):
        self.hook, self.fetch_size, self.log_every, self.clock = hook, fetch_size, log_every, clock
        self._conn = None

    def _cursor(self, conn):
        if getattr(self.hook, "conn_type", "") == "postgres":
            return conn.cursor(name=f"flux_export_{uuid.uuid4().hex[:8]}")  # server-side: streams
        return conn.cursor()

    def _write(self, cursor, out, columns: list[Column], field_terminator: str, row_terminator: str, start: float):
        """Write every row ``cursor`` fetches as terminated text; returns (rows, bytes)."""
        field_t, row_t = field_terminator.encode(), row_terminator.encode()
        renderers = [renderer(c) for c in columns]
        names = [c.name for c in columns]
        last_log, rows, written = start, 0, 0
        while batch := cursor.fetchmany(self.fetch_size):
            for row in batch:
                fields = [render(value) for render, value in zip(renderers, row)]
                for name, raw in zip(names, fields):
                    if field_t in raw or row_t in raw:
                        raise TerminatorInData(rows + 1, name, field_terminator if field_t in raw else row_terminator)
                line = field_t.join(fields) + row_t
                out.write(line)
                written += len(line)
            rows += len(batch)
            now = self.clock()
            if now - last_log >= self.log_every:
                last_log = now
                log.info("exported %d rows, %.1f MB, %.0f rows/s", rows, written / 1e6, rows / max(now - start, 1e-9))
        return rows, written

    def export(
        self,
        query: str,
        out_path: str,
        columns: list[Column],
        *,
        field_terminator: str,
        row_terminator: str,
        dataset: str | None = None,
    ) -> int:
        start = self.clock()
        conn = None
        try:
            self._conn = conn = self.hook.get_conn()
            cursor = self._cursor(conn)
            cursor.arraysize = self.fetch_size
            cursor.execute(query)
            with open(out_path, "wb", buffering=1 << 20) as out:
                rows, written = self._write(cursor, out, columns, field_terminator, row_terminator, start)
        except TerminatorInData as exc:
            raise flux_error(str(exc), error_class=ErrorClass.DATA, dataset=dataset, step="export") from exc
        except (FluxError, OSError):
            raise
        except Exception as exc:  # driver exceptions have no common base class across drivers
            raise driver_error(exc, "the DB-API export failed", dataset) from exc
        finally:
            self._conn = None
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # closing a broken connection may fail; the export already failed or ended
                    pass
        seconds = max(self.clock() - start, 1e-9)
        log.info(
            "DB-API engine exported %d rows (%.1f MB) in %.1fs (%.0f rows/s)",
            rows,
            written / 1e6,
            seconds,
            rows / seconds,
        )
        return rows

    def kill(self) -> None:
        conn = self._conn
        if conn is not None:
            try:
                conn.close()
            except Exception:  # best effort from another thread while the export is running
                pass
