"""One HiveServer2 session for a flux step: statements run asynchronously, can be cancelled, fail classified.

Built on Airflow's ``HiveServer2Hook`` (PyHive). Each statement is submitted
with ``async_=True`` and polled, so a long transform logs its progress, and an
Airflow timeout, ``on_kill`` or any other interruption cancels the operation on
the server (``CancelOperation`` over a second connection: a Thrift connection
is not safe to use from two threads, and the first one may be blocked in a
poll). Failures become :class:`~flux_provider.errors.FluxError` with the data
set, the step and the first line of the statement.

The local stack's HiveServer2 is Spark Thrift Server; its errors carry Spark's
error classes (``[TABLE_OR_VIEW_NOT_FOUND]``), Apache Hive's carry
``SemanticException``/``ParseException`` texts: both are classified.
"""

from __future__ import annotations

import logging
import re
import threading
import time

from airflow.sdk.bases.hook import BaseHook

from flux_provider.errors import ErrorClass, FluxError, flux_error

log = logging.getLogger(__name__)

_RULES: list[tuple[re.Pattern, ErrorClass]] = [
    # files replaced under a running query (another job rewrote a table it reads): a new try re-lists them
    (re.compile(r"FAILED_READ_FILE\.FILE_NOT_EXIST|underlying files have been updated", re.I), ErrorClass.UNKNOWN),
    (
        re.compile(
            r"PARSE_SYNTAX_ERROR|ParseException|mismatched input|cannot recognize input|"
            r"INVALID_SQL_SYNTAX|UNSUPPORTED_FEATURE",
            re.I,
        ),
        ErrorClass.SYNTAX,
    ),
    (
        re.compile(
            r"TABLE_OR_VIEW_NOT_FOUND|SCHEMA_NOT_FOUND|DATABASE_NOT_FOUND|UNRESOLVED_COLUMN|"
            r"UNRESOLVED_ROUTINE|PARTITIONS?_NOT_FOUND|Table not found|Database does not exist|"
            r"Invalid table alias or column reference|Invalid column reference|NoSuchObjectException|"
            r"PATH_NOT_FOUND|FileNotFoundException",
            re.I,
        ),
        ErrorClass.MISSING_OBJECT,
    ),
    (
        re.compile(
            r"AccessControlException|Permission denied|AccessDenied|HiveAccessControlException|"
            r"Forbidden \(Service: Amazon S3",
            re.I,
        ),
        ErrorClass.PERMISSION,
    ),
    (
        re.compile(
            r"CAST_INVALID_INPUT|DIVIDE_BY_ZERO|ARITHMETIC_OVERFLOW|NUMERIC_VALUE_OUT_OF_RANGE|"
            r"CAST_OVERFLOW|INCOMPATIBLE_DATA_FOR_TABLE|INSERT_COLUMN_ARITY_MISMATCH|"
            r"DATATYPE_MISMATCH|INCOMPATIBLE_COLUMN_TYPE|NumberFormatException|"
            r"cannot be cast|Cannot insert into target table because column number",
            re.I,
        ),
        ErrorClass.DATA,
    ),
    (
        re.compile(r"TABLE_OR_VIEW_ALREADY_EXISTS|AlreadyExistsException|LOCATION_ALREADY_EXISTS", re.I),
        ErrorClass.CONFIG,
    ),
    (re.compile(r"timed? ?out|TimeoutException", re.I), ErrorClass.TIMEOUT),
    (re.compile(r"SlowDown|503 Service Unavailable|Too many requests", re.I), ErrorClass.THROTTLED),
    (
        re.compile(
            r"Connection refused|Connection reset|Broken pipe|TTransportException|Could not connect|"
            r"Invalid SessionHandle|Invalid OperationHandle|SparkContext was shut down",
            re.I,
        ),
        ErrorClass.CONNECTION,
    ),
]


def _status_texts(exc: BaseException) -> list[str]:
    """The server's status message(s) of a PyHive failure, then the exception's own text."""
    arg = exc.args[0] if exc.args else None
    status = getattr(arg, "status", None)
    return [t for t in (getattr(status, "errorMessage", None), getattr(arg, "errorMessage", None), str(exc)) if t]


_UNSAFE_CAST = re.compile(r"Cannot safely cast [`'\"]?(\w+)[`'\"]?:? [`'\"]?(\w+)[`'\"]? to [`'\"]?(\w+)[`'\"]?", re.I)


def type_fix(text: str) -> str | None:
    """What to write when an INSERT's column type does not fit the target's (Spark refuses the implicit
    cast, e.g. an exported DATETIME2, a string in staging, into a TIMESTAMP column), or None."""
    found = _UNSAFE_CAST.search(text)
    if found is None:
        return None
    column, source, target = found.group(1), found.group(2).upper(), found.group(3).upper()
    return (
        f"Fix: cast it in the transform's SELECT: CAST({column} AS {target}) AS {column} (the staging column is "
        f"{source}), or make the target column {source}"
    )


def server_message(exc: BaseException) -> str:
    """The server's error text of a PyHive failure (the status message, not the Thrift repr)."""
    text = _status_texts(exc)[0]
    text = re.sub(r"^Error running query: (\[\w+(\.\w+)*\] )?(org\.apache\.[\w.$]+: )?", "", text.strip())
    return text


def classify_hive(exc: BaseException) -> ErrorClass:
    import socket

    from thrift.transport.TTransport import TTransportException

    if isinstance(exc, (TTransportException, ConnectionError, socket.timeout, socket.gaierror)):
        return ErrorClass.CONNECTION
    text = " ".join(_status_texts(exc))
    for pattern, error_class in _RULES:
        if pattern.search(text):
            return error_class
    return ErrorClass.UNKNOWN


def first_line(sql: str, limit: int = 160) -> str:
    line = " ".join(sql.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class HiveSessionHook(BaseHook):
    """A hook: the statements of one step over one HiveServer2 connection (``hiveserver2_conn_id``),
    through Airflow's ``HiveServer2Hook``.

    :param log_every: log a still-running statement at most this often (seconds).
    """

    conn_name_attr = "hiveserver2_conn_id"
    default_conn_name = "hiveserver2_default"
    conn_type = "hiveserver2"
    hook_name = "flux HiveServer2 session (async statements, cancel, classified errors)"

    def __init__(
        self,
        hiveserver2_conn_id: str = default_conn_name,
        *,
        dataset: str | None = None,
        step: str | None = None,
        schema: str | None = None,
        log_every: float = 15.0,
    ):
        from airflow.providers.apache.hive.hooks.hive import HiveServer2Hook

        super().__init__()
        self.hiveserver2_conn_id = hiveserver2_conn_id
        self.hook = HiveServer2Hook(hiveserver2_conn_id=hiveserver2_conn_id)
        self.dataset, self.step, self.schema, self.log_every = dataset, step, schema, log_every
        self._conn = None
        self._cursor = None
        self._lock = threading.Lock()
        self.statements: list[dict] = []

    # ------------------------------------------------------------------ connection
    def _connect(self):
        if self._conn is None:
            try:
                self._conn = self.hook.get_conn(schema=self.schema)
            except Exception as exc:  # classified
                raise self._error("connecting to HiveServer2", exc, ErrorClass.CONNECTION) from exc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a dead connection: nothing to keep
                pass
            self._conn = None

    def __enter__(self) -> HiveSessionHook:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _error(self, what: str, exc: BaseException, error_class: ErrorClass | None = None) -> FluxError:
        error_class = error_class or classify_hive(exc)
        message, fix = server_message(exc), type_fix(" ".join(_status_texts(exc)))
        return flux_error(
            f"{what}: {message}" + (f". {fix}" if fix else ""),
            error_class=error_class,
            dataset=self.dataset,
            step=self.step,
        )

    # ------------------------------------------------------------------ statements
    def execute(self, sql: str, *, what: str | None = None) -> list[tuple]:
        """Run one statement; returns its rows (empty for DDL/DML). Cancels it if interrupted."""
        from TCLIService.ttypes import TOperationState

        conn = self._connect()
        cursor = conn.cursor()
        label = what or first_line(sql)
        started = last_log = time.monotonic()
        log.info("data set %s: %s", self.dataset, label)
        try:
            cursor.execute(sql, async_=True)
            with self._lock:
                self._cursor = cursor
            done = (
                TOperationState.FINISHED_STATE,
                TOperationState.ERROR_STATE,
                TOperationState.CANCELED_STATE,
                TOperationState.CLOSED_STATE,
            )
            while True:
                status = cursor.poll()  # the server long-polls (about 5 s) while the operation runs
                state = status.operationState
                if state in done or state is None:
                    break
                now = time.monotonic()
                if now - last_log >= self.log_every:
                    last_log = now
                    log.info("data set %s: still running after %.0fs: %s", self.dataset, now - started, label)
            if state == TOperationState.CANCELED_STATE:
                raise flux_error(
                    f"{label}: cancelled on the server",
                    error_class=ErrorClass.TIMEOUT,
                    dataset=self.dataset,
                    step=self.step,
                )
            if state == TOperationState.ERROR_STATE:
                raise _ServerError(status.errorMessage or "the operation failed")
            rows = cursor.fetchall() if cursor.description else []
        except FluxError:
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception):  # timeout signal, KeyboardInterrupt, SystemExit
                self.cancel()
                raise
            raise self._error(f"{'statement' if what is None else what} failed [{first_line(sql)}]", exc) from exc
        finally:
            with self._lock:
                self._cursor = None
        seconds = time.monotonic() - started
        self.statements.append({"statement": label, "seconds": round(seconds, 3)})
        log.info("data set %s: done in %.1fs: %s", self.dataset, seconds, label)
        return rows

    def column_names(self, sql: str) -> list[str]:
        """Output column names of a SELECT (runs it with LIMIT 0)."""
        conn = self._connect()
        cursor = conn.cursor()
        try:
            cursor.execute(f"SELECT * FROM (\n{sql}\n) flux_cols LIMIT 0")
            names = [d[0].rsplit(".", 1)[-1] for d in cursor.description or []]
            cursor.fetchall()
        except Exception as exc:  # classified
            raise self._error(f"reading the columns of [{first_line(sql)}]", exc) from exc
        return names

    def scalar(self, sql: str, *, what: str | None = None):
        rows = self.execute(sql, what=what)
        return rows[0][0] if rows else None

    def cancel(self) -> bool:
        """Cancel the running statement from any thread, over a second connection. True if one was running."""
        from TCLIService import ttypes

        with self._lock:
            cursor = self._cursor
        handle = getattr(cursor, "_operationHandle", None)
        if handle is None:
            return False
        try:
            conn = self.hook.get_conn(schema=self.schema)
            try:
                conn.client.CancelOperation(ttypes.TCancelOperationReq(operationHandle=handle))
            finally:
                conn.close()
            log.warning("data set %s: cancelled the running HiveServer2 operation", self.dataset)
            return True
        except Exception as exc:  # the server may be gone; nothing left to cancel then
            log.warning("data set %s: could not cancel the HiveServer2 operation: %s", self.dataset, exc)
            return False


class _ServerError(Exception):
    """An operation that ended in ERROR_STATE (its message is classified like any other)."""
