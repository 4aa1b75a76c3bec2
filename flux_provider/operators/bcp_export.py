"""BcpExportOperator: step 1 of a data set, SQL Server -> one export file for the next step.

Example::

    from flux_provider.operators.bcp_export import BcpExportOperator

    export = BcpExportOperator(
        task_id="export",
        dataset="titles",
        schema="dbo",
        table="titles",                      # or sql="SELECT ... FROM dbo.titles WHERE ..."
        count_sql="SELECT COUNT(*) FROM dbo.titles",   # optional: verify the row count
        mssql_conn_id="mssql_default",
        engine="auto",                       # bcp/freebcp if installed, else the DB-API engine
    )

The file lands under ``staging_dir/<dataset>/<run_id>/<task_id>.try<N>.bcp`` (written as
``.partial`` and renamed only after every check passed, so a later step never
sees half a file). XCom ``return_value`` carries what the next step needs:
path, host, rows, bytes, terminators, format and the columns with their SQL
types, precision and scale as the server describes them.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from flux_provider.errors import ErrorClass, FluxError
from flux_provider.formats import export_file as fmt
from flux_provider.handoffs import ExportResult
from flux_provider.hooks.bcp import BcpHook
from flux_provider.hooks.dbapi_export import DbApiExportEngine, describe, driver_error, is_mssql
from flux_provider.identifiers import sqlserver_table
from flux_provider.operators.base import FluxOperator
from flux_provider.queries import QueryRefused, check_read_only
from flux_provider.source_timing import FirstRow

ENGINES = ("auto", "bcp", "dbapi")


#: A run's staging folder left empty this long is removed by the next export of its data set.
EMPTY_RUN_FOLDER_AGE = 3600.0


def _sweep_empty_runs(dataset_folder: Path, *, keep: Path) -> None:
    """Remove the data set's run folders that have been empty for an hour (every file of a run is deleted once
    uploaded, the folder is not: another part of the run may be about to write into it)."""
    old = time.time() - EMPTY_RUN_FOLDER_AGE
    for folder in dataset_folder.iterdir():
        try:
            if folder != keep and folder.is_dir() and folder.stat().st_mtime < old and not any(folder.iterdir()):
                folder.rmdir()
        except OSError:  # written into meanwhile, or removed by another task
            continue


def default_staging_dir() -> str:
    from flux_provider.config import flux_str

    return flux_str("staging_dir")


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part).strip("._") or "run"


class BcpExportOperator(FluxOperator):
    """Export a query or table from SQL Server with bcp (or the DB-API engine) to a staging file.

    :param dataset: the data set's name (file layout, log and error messages).
    :param schema: schema of ``table`` (validated identifier).
    :param table: export the whole table (validated identifier); or give ``sql``.
    :param sql: the query to export (templated).
    :param count_sql: optional query returning the expected row count (templated).
    :param mssql_conn_id: Airflow ``mssql`` connection of the source.
    :param engine: ``auto`` (bcp if a tool is installed, else DB-API), ``bcp`` or ``dbapi``.
    :param dbapi_conn_id: connection for the DB-API engine if not the SQL Server one (any DbApiHook).
    :param staging_dir: where export files go (templated; default ``[flux] staging_dir``, else
        ``/tmp/flux-staging``).
    :param field_terminator: a multi-character field terminator that must not occur in data.
    :param row_terminator: a multi-character row terminator that must not occur in data.
    :param batch_size: passed to the bcp tool (``-b``).
    :param packet_size: network packet size in bytes (bcp ``-a``, freebcp ``-A``).
    :param max_errors: passed to the bcp tool (``-m``).
    :param hints: passed to the bcp tool (``-h``).
    :param bcp_path: the bcp tool to run (default: the connection's ``bcp_path``, else ``bcp`` or ``freebcp``).
    :param fetch_size: rows per fetch for the DB-API engine (bounds its memory).
    """

    template_fields: Sequence[str] = ("sql", "count_sql", "staging_dir", "table", "schema")
    template_ext: Sequence[str] = (".sql",)
    ui_color = "#c9e4ff"
    step = "export"

    def __init__(
        self,
        *,
        dataset: str,
        schema: str | None = None,
        table: str | None = None,
        sql: str | None = None,
        count_sql: str | None = None,
        mssql_conn_id: str = "mssql_default",
        engine: str = "auto",
        dbapi_conn_id: str | None = None,
        staging_dir: str | None = None,
        field_terminator: str = fmt.DEFAULT_FIELD_TERMINATOR,
        row_terminator: str = fmt.DEFAULT_ROW_TERMINATOR,
        batch_size: int | None = 10_000,
        packet_size: int | None = None,
        max_errors: int | None = None,
        hints: str | None = None,
        bcp_path: str | None = None,
        fetch_size: int = 10_000,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dataset, self.schema, self.table, self.sql, self.count_sql = dataset, schema, table, sql, count_sql
        self.mssql_conn_id, self.engine, self.dbapi_conn_id = mssql_conn_id, engine, dbapi_conn_id
        self.staging_dir = staging_dir
        self.field_terminator, self.row_terminator = field_terminator, row_terminator
        self.batch_size, self.packet_size, self.max_errors, self.hints = batch_size, packet_size, max_errors, hints
        self.bcp_path, self.fetch_size = bcp_path, fetch_size
        self._runner = None
        self._partial: Path | None = None

    # ----------------------------------------------------------------- checks
    def _validate(self) -> None:
        if self.engine not in ENGINES:
            raise self._fail(f"engine {self.engine!r} is not one of {', '.join(ENGINES)}")
        if bool(self.table) == bool(self.sql):
            raise self._fail("give exactly one of table= (with schema=) or sql=")
        for name in ("sql", "count_sql"):
            if getattr(self, name):
                try:
                    # a non-SQL Server source (engine dbapi) is checked in sqlglot's generic dialect
                    check_read_only(getattr(self, name), dialect=None if self.dbapi_conn_id else "tsql")
                except QueryRefused as exc:
                    raise self._fail(f"{name}: {exc}") from None
        if self.dbapi_conn_id and self.engine != "dbapi":
            raise self._fail("dbapi_conn_id names a non-SQL Server source: it needs engine='dbapi'")
        for name in ("field_terminator", "row_terminator"):
            value = getattr(self, name)
            if len(value) < 2 or "\x00" in value:
                raise self._fail(
                    f"{name} {value!r} must be at least 2 characters and contain no NUL "
                    "(bcp writes NUL for empty strings)"
                )
        if self.field_terminator in self.row_terminator or self.row_terminator in self.field_terminator:
            raise self._fail("field_terminator and row_terminator must not contain one another")

    def _paths(self, context) -> tuple[Path, Path]:
        ti = context["ti"]
        folder = Path(self.staging_dir or default_staging_dir()) / _safe(self.dataset) / _safe(ti.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)  # in use now: the sweep below never takes it
        _sweep_empty_runs(folder.parent, keep=folder)
        # one file per task and try: several export tasks of one data set may run in the same DAG run
        map_index = getattr(ti, "map_index", -1)
        task = _safe(self.task_id) + (f".{map_index}" if isinstance(map_index, int) and map_index >= 0 else "")
        final = folder / f"{task}.try{ti.try_number}.bcp"
        self._remove_earlier_tries(folder, task, ti.try_number)
        return final, final.with_name(final.name + ".partial")

    def _remove_earlier_tries(self, folder: Path, task: str, try_number: int) -> None:
        """Files a killed earlier try of this task left (export file, ``.partial``, the streaming ``.fifo``):
        a newer try supersedes them all."""
        pattern = re.compile(rf"^{re.escape(task)}\.try(\d+)\.")
        for leftover in folder.iterdir():
            match = pattern.match(leftover.name)
            if match and int(match.group(1)) < try_number:
                leftover.unlink(missing_ok=True)
                self.log.info("data set %s: removed %s, left by an earlier try", self.dataset, leftover.name)

    # ----------------------------------------------------------------- run
    def prepare(self) -> None:
        """Validate, describe the result's columns and build the export query (no data moves yet)."""
        from airflow.providers.microsoft.mssql.hooks.mssql import MsSqlHook

        self._validate()
        self.dbapi_hook = (
            MsSqlHook(mssql_conn_id=self.mssql_conn_id) if not self.dbapi_conn_id else _hook_for(self.dbapi_conn_id)
        )
        mssql = is_mssql(self.dbapi_hook)
        source_table = None
        if self.table:
            source_table = sqlserver_table(self.schema, self.table, dataset=self.dataset)
            if not mssql:  # ANSI quoting for other DB-API sources
                source_table = source_table.replace("[", '"').replace("]", '"')
        source_query = self.sql if self.sql else f"SELECT * FROM {source_table}"
        self.columns = describe(self.dbapi_hook, source_query, dataset=self.dataset)
        if not self.columns:
            raise self._fail("the query returns no columns", ErrorClass.SYNTAX)
        self.chosen_engine = self._choose_engine()
        bcp = self.chosen_engine == "bcp"
        try:
            self.query = (
                source_query
                if not mssql
                else fmt.export_query(self.columns, table=source_table, bcp=bcp)
                if source_table
                else fmt.export_query(self.columns, query=source_query, bcp=bcp)
            )
        except ValueError as exc:
            raise self._fail(str(exc)) from exc

    def run_engine(self, out_path: str, first_row: FirstRow | None = None) -> tuple[int, str]:
        """Export into ``out_path`` (a file or a named pipe) with the chosen engine: (rows, tool). The try's
        :class:`~flux_provider.source_timing.SourceTiming` is left in ``source_timing`` (for a pipe, its reader
        tells ``first_row`` when the first byte arrived)."""
        timing = (first_row or FirstRow()).start(out_path)
        rows = None
        try:
            if self.chosen_engine == "bcp":
                self._runner = BcpHook(
                    self.mssql_conn_id,
                    executable=self.bcp_path,
                    batch_size=self.batch_size,
                    packet_size=self.packet_size,
                    max_errors=self.max_errors,
                    hints=self.hints,
                )
                result = self._runner.export(
                    self.query,
                    out_path,
                    field_terminator=self.field_terminator,
                    row_terminator=self.row_terminator,
                    dataset=self.dataset,
                )
                rows = result.rows
                return result.rows, result.tool
            self._runner = DbApiExportEngine(self.dbapi_hook, fetch_size=self.fetch_size)
            rows = self._runner.export(
                self.query,
                out_path,
                self.columns,
                field_terminator=self.field_terminator,
                row_terminator=self.row_terminator,
                dataset=self.dataset,
            )
            return rows, "dbapi"
        finally:
            self._runner = None
            self.source_timing = timing.stop(rows)
            self.log.info(
                "data set %s: the source answered in %s (first row), %s rows/s",
                self.dataset,
                "-" if self.source_timing.first_row is None else f"{self.source_timing.first_row:.2f}s",
                "-" if self.source_timing.rows_per_s is None else f"{self.source_timing.rows_per_s:.0f}",
            )

    def check_count(self, rows: int) -> None:
        if self.count_sql:
            try:
                expected = self.dbapi_hook.get_first(self.count_sql)[0]
            except Exception as exc:  # a deadlock victim or timeout of the count query: classed as the export's
                raise driver_error(exc, "the count query failed", self.dataset) from exc
            if int(expected) != rows:
                raise self._fail(
                    f"exported {rows} rows but the count query returned {expected}; the source "
                    "changed during the export or the count query does not match it",
                    ErrorClass.DATA,
                )

    def work(self, context) -> dict:
        started = time.monotonic()
        self.prepare()
        final, partial = self._paths(context)
        self._partial = partial
        for stale in (final, partial):
            stale.unlink(missing_ok=True)
        self.log.info(
            "data set %s: exporting %d columns with the %s engine to %s",
            self.dataset,
            len(self.columns),
            self.chosen_engine,
            final,
        )
        try:
            rows, tool = self.run_engine(str(partial))
            self._verify(partial, rows, len(self.columns))
            self.check_count(rows)
            with open(partial, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        size = final.stat().st_size
        seconds = time.monotonic() - started
        self.log.info(
            "data set %s: exported %d rows, %.1f MB in %.1fs (%.1f MB/s) -> %s",
            self.dataset,
            rows,
            size / 1e6,
            seconds,
            size / 1e6 / max(seconds, 1e-9),
            final,
        )
        return self.export_info(path=str(final), rows=rows, size=size, tool=tool, seconds=seconds).to_json()

    def source_lineage(self) -> list:
        """The table or the query's tables this export reads (SQL Server sources only)."""
        from flux_provider.operators import lineage

        if self.dbapi_conn_id and self.dbapi_conn_id != self.mssql_conn_id:
            return []
        part = getattr(self, "part", None) or {}
        sql = part.get("sql") or self.sql
        table = None if part else self.table
        return lineage.mssql_inputs(self.mssql_conn_id, schema=self.schema, table=table, sql=sql)

    def lineage(self, complete: bool) -> tuple[list, list]:
        from flux_provider.operators import lineage

        inputs = self.source_lineage()
        export = ExportResult.from_json(self.flux_result) if complete else None
        if export is None or not export.path:
            return inputs, []
        output = lineage.file_output(
            export.host or self.host,
            export.path,
            rows=export.rows,
            size=export.bytes,
            columns=lineage.export_columns(export.columns),
            source=inputs[0] if len(inputs) == 1 else None,
        )
        return inputs, [output]

    def export_info(
        self, *, path: str | None, rows: int | None, size: int | None, tool: str, seconds: float
    ) -> ExportResult:
        """What the next step needs."""
        return ExportResult(
            dataset=self.dataset,
            path=path,
            host=self.host or socket.gethostname(),
            rows=rows,
            bytes=size,
            format=fmt.FORMAT,
            field_terminator=self.field_terminator,
            row_terminator=self.row_terminator,
            null="",
            empty_string="\\0",
            engine=self.chosen_engine,
            tool=tool,
            columns=list(self.columns),
            seconds=round(seconds, 3),
        )

    def _choose_engine(self) -> str:
        if self.engine != "auto":
            return self.engine
        try:
            extra = BcpHook.get_connection(self.mssql_conn_id).extra_dejson
            BcpHook(self.mssql_conn_id, executable=self.bcp_path).find_executable(extra)
            return "bcp"
        except FluxError:
            self.log.info("no bcp tool installed: using the DB-API engine")
            return "dbapi"

    def _verify(self, path: Path, rows: int, ncols: int) -> None:
        """The file must hold exactly ``rows`` rows of ``ncols`` fields (a terminator inside the data,
        or a truncated file, breaks one of the counts)."""
        row_marks, field_marks = fmt.scan(path, self.field_terminator, self.row_terminator)
        if row_marks != rows or field_marks != rows * (ncols - 1):
            raise self._fail(
                f"{path} holds {row_marks} row and {field_marks} field terminators for {rows} rows of {ncols} "
                "columns: a value contains a terminator, or the file is truncated. Choose other "
                "field_terminator/row_terminator for this data set",
                ErrorClass.DATA,
            )

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.kill()
        if self._partial is not None:
            self._partial.unlink(missing_ok=True)


def _hook_for(conn_id: str):
    from airflow.sdk.bases.hook import BaseHook

    return BaseHook.get_connection(conn_id).get_hook()
