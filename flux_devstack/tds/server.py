"""A small TDS server: the SQL Server stand-in of the local stack and the tests.

Real clients (FreeTDS ``freebcp``, ``pymssql``) connect to it over TCP. It
speaks TDS 7.x without encryption, checks the LOGIN7 password, and runs SQL
batches on SQLite, streaming results with SQL Server's column metadata and
error numbers. It is NOT SQL Server: T-SQL-only syntax (TOP, temp tables,
procedures other than the ones below, T-SQL functions) is out of its reach and
fails with an error; transactions are no-ops (SQLite runs in autocommit).

What it understands beyond SQLite's SQL:
* ``SET ...`` statements (ignored), ``BEGIN TRAN`` / ``COMMIT`` / ``ROLLBACK``
  (no-ops), ``USE db``, ``N'...'`` literals, ``[bracketed]`` names, ``dbo.table``
  and ``<database>.dbo.table``, ``@@VERSION`` / ``@@SPID`` / ``@@TRANCOUNT``;
* ``SET FMTONLY ON <query> SET FMTONLY OFF`` (metadata only, as freebcp sends);
* ``CONVERT(VARCHAR(n), <date/time>, 121)`` and ``CONVERT(datetime2, '<literal>', 120)`` (split bounds);
* ``UNICODE``, ``NCHAR``, ``CONCAT``, ``DATALENGTH``, ``CAST(x AS NVARCHAR(MAX))`` and the collation
  ``Latin1_General_BIN2`` (the bcp export's NUL escape), with ``REPLACE`` that sees NUL characters;
* ``EXEC sp_describe_first_result_set @tsql = N'<query>'`` (name, types,
  precision, scale, nullability of a query's result);
* column types from the declared types of the tables (``DECIMAL(38,10)`` etc.;
  DECIMAL columns are stored as TEXT so no digit is lost);
* one process per connection (forked), so parallel sessions use several cores, and a capacity per
  table (``flux_capacity``, :mod:`flux_devstack.tds.capacity`): above it queries slow down,
  then fail as deadlock victims, as a loaded SQL Server does;
* SQL Server's views of its load (``sys.dm_exec_requests``, ``sys.dm_exec_query_memory_grants``...,
  :mod:`flux_devstack.tds.server_state`), from the server-wide row of the capacity model;
* fault injection through the table ``flux_faults`` (see :data:`FAULTS_DDL`):
  a batch containing ``pattern`` fails with SQL Server error ``error_number``
  (e.g. 1205 deadlock victim) ``remaining`` times (-1: always), optionally after
  sending ``after_rows`` rows or after sleeping ``delay_seconds`` (cut short when the row is deleted: a
  test holds a query, then releases it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import socket
import socketserver
import sqlite3
import time
from collections.abc import Callable, Iterator
from operator import call
from pathlib import Path

from flux_devstack.tds import capacity, server_state
from flux_devstack.tds import protocol as p

log = logging.getLogger("flux_devstack.tds")

FAULTS_DDL = """CREATE TABLE IF NOT EXISTS flux_faults (
    pattern TEXT NOT NULL,          -- case-insensitive substring of the SQL batch
    error_number INTEGER,           -- SQL Server error to raise (NULL: only delay)
    remaining INTEGER DEFAULT 1,    -- how many more batches it hits; -1 = forever
    delay_seconds REAL DEFAULT 0,   -- sleep before answering (a hung server)
    after_rows INTEGER DEFAULT 0    -- rows sent before the error (a failure mid-export)
)"""

# SQL Server's own numbers, severities and texts for the errors the server raises.
MESSAGES = {
    102: (15, "Incorrect syntax near '{0}'."),
    207: (16, "Invalid column name '{0}'."),
    208: (16, "Invalid object name '{0}'."),
    229: (14, "The SELECT permission was denied on the object '{0}'."),
    300: (14, "VIEW SERVER STATE permission was denied on object 'server', database 'master'."),
    1205: (
        13,
        "Transaction (Process ID {spid}) was deadlocked on lock resources with another process and "
        "has been chosen as the deadlock victim. Rerun the transaction.",
    ),
    4060: (11, 'Cannot open database "{0}" requested by the login. The login failed.'),
    257: (
        16,
        "Implicit conversion from data type varchar to varbinary is not allowed. Use the CONVERT function "
        "to run this query.",
    ),
    8115: (16, "Arithmetic overflow error converting {0} to data type numeric."),
    18456: (14, "Login failed for user '{0}'."),
    40501: (20, "The service is currently busy. Retry the request after 10 seconds."),
    -2: (16, "Execution Timeout Expired. The timeout period elapsed prior to completion of the operation."),
    50000: (16, "{0}"),
}


class TdsError(Exception):
    def __init__(self, number: int, *args: str, spid: int = 0):
        severity, template = MESSAGES.get(number, (16, "Error {number}."))
        self.number, self.severity = number, severity
        super().__init__(template.format(*args, spid=spid, number=number))


#: The stand-in's own tables (faults, capacity model): batches on them are not load. An export's
#: ``AS flux_export`` alias is a user query like any other.
_CONTROL_TABLES = re.compile(r"\bflux_(faults|capacity|running|victims|served|denied)\b", re.I)

_SQLITE_ERRORS = [
    (re.compile(r"no such table: (?:\w+\.)?(\S+)"), 208),
    (re.compile(r"no such column: (\S+)"), 207),
    (re.compile(r'near "(.*)": syntax error'), 102),
    (re.compile(r"(incomplete input)"), 102),
    (re.compile(r"CHECK constraint failed: (flux_binary_\w+)"), 257),
]


def _translate_sqlite_error(exc: sqlite3.Error, spid: int) -> TdsError:
    text = str(exc)
    for pattern, number in _SQLITE_ERRORS:
        match = pattern.search(text)
        if match:
            return TdsError(number, match.group(1), spid=spid)
    return TdsError(50000, text, spid=spid)


# ---------------------------------------------------------------- SQL translation
def _quoted_end(sql: str, i: int) -> int:
    """Index just past the quoted name or literal opening at ``sql[i]`` ('', "" and ]] escapes)."""
    close = "]" if sql[i] == "[" else sql[i]
    j, n = i + 1, len(sql)
    while j < n:
        if sql[j] == close:
            if j + 1 < n and sql[j + 1] == close:
                j += 2
                continue
            break
        j += 1
    return j + 1


def _split_statements(batch: str) -> list[str]:
    """Split a batch on top-level ``;`` (quotes, brackets and comments respected)."""
    out, current, i, n = [], [], 0, len(batch)
    while i < n:
        ch = batch[i]
        if ch in "'\"[":
            j = _quoted_end(batch, i)
            current.append(batch[i:j])
            i = j
        elif batch.startswith("--", i):
            j = batch.find("\n", i)
            i = n if j < 0 else j
        elif ch == ";":
            out.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    out.append("".join(current))
    return [s.strip() for s in out if s.strip()]


def _strip_n_literals(sql: str) -> str:
    """``N'text'`` -> ``'text'`` outside of string literals."""
    out, i, n = [], 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            j = _quoted_end(sql, i)
            out.append(sql[i:j])
            i = j
        elif (
            ch in "Nn"
            and i + 1 < n
            and sql[i + 1] == "'"
            and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_"))
        ):
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_NUMBER = re.compile(r"(-\s*)?(\d+)(\.\d*)?(?![\w.])")
_INT64 = (-(2**63), 2**63 - 1)


def _exact_literals(sql: str) -> str:
    """Literals SQLite would change, rewritten so it stores what SQL Server would:

    * ``0x0001FF`` (T-SQL binary) -> ``X'0001FF'`` (``0x`` alone: empty binary);
    * a number SQLite would read as a float (more than 15 digits with a decimal point, or an integer
      outside BIGINT) -> the same digits as text, so a DECIMAL(38,s) column keeps every digit;
    * U+0000 inside a string literal (SQLite's API refuses it in SQL text) -> ``char(0)`` concatenated.
    """
    out, i, n = [], 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"[":
            j = _quoted_end(sql, i)
            literal = sql[i:j]
            if ch == "'" and "\x00" in literal:
                literal = "(" + " || char(0) || ".join(f"'{part}'" for part in literal[1:-1].split("\x00")) + ")"
            out.append(literal)
            i = j
            continue
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
            continue
        word_start = i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] in "_@#$")
        if word_start and ch == "0" and i + 1 < n and sql[i + 1] in "xX":
            match = re.match(r"0[xX]([0-9A-Fa-f]*)(?![\w])", sql[i:])
            if match:
                digits = match.group(1)
                out.append(f"X'{'0' * (len(digits) % 2)}{digits}'")
                i += match.end()
                continue
        if word_start and (ch.isdigit() or ch == "-"):
            k = i - 1
            while k >= 0 and sql[k].isspace():
                k -= 1
            previous = sql[k] if k >= 0 else ""
            match = _NUMBER.match(sql, i)
            if match and (ch != "-" or previous in ("", "(", ",", "=", "<", ">")):
                sign, whole, fraction = match.groups()
                text = ("-" if sign else "") + whole + (fraction or "")
                digits = len(whole.lstrip("0")) + len((fraction or ".")[1:])
                too_long = (fraction is not None and digits > 15) or (
                    fraction is None and not _INT64[0] <= int(text) <= _INT64[1]
                )
                out.append(f"'{text}'" if too_long else sql[i : match.end()])
                i = match.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


_FMTONLY = re.compile(r"^\s*SET\s+FMTONLY\s+ON\s+(.*?)\s*;?\s*SET\s+FMTONLY\s+OFF\s*;?\s*$", re.I | re.S)
_DESCRIBE = re.compile(
    r"^\s*EXEC(?:UTE)?\s+(?:sys\.)?sp_describe_first_result_set\s+(?:@tsql\s*=\s*)?N?'(.*)'\s*$", re.I | re.S
)
_NOOP = re.compile(r"^\s*(SET\s|BEGIN\s+TRAN|COMMIT|ROLLBACK|IF\s+@@TRANCOUNT|SAVE\s+TRAN)", re.I)
_USE = re.compile(r"^\s*USE\s+\[?(\w+)\]?\s*$", re.I)
_CONVERT = re.compile(r"CONVERT\(\s*N?VARCHAR\s*\(\s*(\d+)\s*\)\s*,\s*(\[[^\]]+\]|\w+)\s*(?:,\s*(\d+)\s*)?\)", re.I)
# CONVERT(datetime2, 'yyyy-mm-dd hh:mi:ss', 120) (how split bounds are written): the literal itself, which
# compares as the stored ISO text does
_CONVERT_LITERAL = re.compile(r"CONVERT\(\s*(?:date|datetime2?|smalldatetime)\s*,\s*('[^']*')\s*,\s*\d+\s*\)", re.I)
_CAST_MAX = re.compile(r"\bAS\s+N?VARCHAR\s*\(\s*MAX\s*\)", re.I)  # CAST(x AS NVARCHAR(MAX)): SQLite's TEXT
_ISO = re.compile(r"^(-?\d{1,4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?)?$")
_CLOCK = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


def _convert_to_varchar(value, length: int, style):
    """SQL Server's CONVERT(VARCHAR(length), <date/time>, style) for styles 23, 121 and time's default."""
    if value is None:
        return None
    text = str(value).strip()
    clock = _CLOCK.match(text)
    if clock:  # time: hh:mm:ss[.fffffff] cut to the length asked for
        h, mi, sec, frac = clock.groups()
        digits = max(0, length - 9)
        return f"{h}:{mi}:{sec}" + (f".{(frac or '').ljust(digits, '0')[:digits]}" if digits else "")
    match = _ISO.match(text)
    if not match:
        return text[:length]
    y, mo, d, h, mi, sec, frac = match.groups()
    date = f"{int(y):04d}-{mo}-{d}"
    if int(style or 0) == 23 or length <= 10:
        return date
    digits = max(0, length - 20)
    clock_text = f"{h or '00'}:{mi or '00'}:{sec or '00'}"
    return f"{date} {clock_text}" + (f".{(frac or '').ljust(digits, '0')[:digits]}" if digits else "")


_DECIMAL_DDL = re.compile(r"(?<!TEXT )\b(DECIMAL|NUMERIC|MONEY|SMALLMONEY)\b", re.I)
# a binary column and its type in CREATE TABLE: SQLite would store text there (pymssql sends bytes that
# decode as text, b'' and b'\\N' among them, as string literals); SQL Server refuses that at INSERT (257)
_BINARY_DDL = re.compile(
    r"(?P<column>\[[^\]]+\]|\"[^\"]+\"|\b\w+)\s+(?P<type>(?:VAR)?BINARY\s*(?:\(\s*(?:\d+|MAX)\s*\))?|IMAGE)"
    r"(?=[\s,)])",
    re.I,
)


def _binary_only(match: re.Match) -> str:
    """``col VARBINARY(n)`` -> the same with a CHECK that refuses text, named for the error it maps to."""
    column = match.group("column")
    name = re.sub(r"\W", "_", column.strip('[]"'))
    check = f"CONSTRAINT flux_binary_{name} CHECK (typeof({column}) IN ('blob', 'null'))"
    return f"{column} {match.group('type')} {check}"


def _datalength(value) -> int | None:
    if value is None:
        return None
    return len(value) if isinstance(value, bytes) else len(str(value).encode("utf-16-le"))


# T-SQL functions the export queries use, in Python: SQLite's own replace() and length() stop at a NUL character
_TSQL_FUNCTIONS = [
    ("UNICODE", 1, lambda s: ord(s[0]) if isinstance(s, str) and s else None),
    ("NCHAR", 1, lambda n: None if n is None else chr(n)),
    ("CONCAT", -1, lambda *parts: "".join("" if v is None else str(v) for v in parts)),
    ("REPLACE", 3, lambda s, old, new: None if None in (s, old, new) else str(s).replace(old, new) if old else s),
    ("DATALENGTH", 1, _datalength),
]


class Session:
    """One client connection: its SQLite connection and the batches it sends."""

    def __init__(self, db_path: Path, database: str, spid: int, login: str = ""):
        self.database, self.spid, self.login = database, spid, login
        self.db = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("ATTACH DATABASE ? AS dbo", (str(db_path),))
        self.db.create_function("flux_convert", 3, _convert_to_varchar, deterministic=True)
        for name, arity, function in _TSQL_FUNCTIONS:
            self.db.create_function(name, arity, function, deterministic=True)
        self.db.create_collation("Latin1_General_BIN2", lambda a, b: (a > b) - (a < b))

    def close(self) -> None:
        self.db.close()

    def translate(self, sql: str) -> str:
        sql = server_state.translate(_exact_literals(_strip_n_literals(sql)))
        sql = re.sub(rf"\[?{re.escape(self.database)}\]?\.\[?dbo\]?\.", "dbo.", sql, flags=re.I)
        sql = re.sub(r"@@VERSION", "'flux TDS test server (SQLite)'", sql, flags=re.I)
        sql = re.sub(r"@@SPID", str(self.spid), sql, flags=re.I)
        sql = re.sub(r"@@TRANCOUNT", "0", sql, flags=re.I)
        sql = _CONVERT.sub(lambda m: f"flux_convert({m.group(2)}, {m.group(1)}, {m.group(3) or 'NULL'})", sql)
        sql = _CONVERT_LITERAL.sub(r"\1", sql)
        sql = _CAST_MAX.sub("AS TEXT", sql)
        if re.match(r"^\s*CREATE\s+TABLE", sql, re.I):
            sql = _BINARY_DDL.sub(_binary_only, _DECIMAL_DDL.sub(r"TEXT \1", sql))
        return sql

    # -------------------------------------------------------------- describe
    def describe(self, query: str, first_row=None) -> list[tuple[str, p.SqlType, bool]]:
        """Column names and SQL types of ``query``'s result, from declared types."""
        self.db.execute("DROP VIEW IF EXISTS temp.__flux_describe")
        try:
            self.db.execute(f"CREATE TEMP VIEW __flux_describe AS {query}")
            info = self.db.execute("PRAGMA temp.table_info(__flux_describe)").fetchall()
        finally:
            self.db.execute("DROP VIEW IF EXISTS temp.__flux_describe")
        columns = []
        for index, (_, name, declared, notnull, _, _) in enumerate(info):
            sql_type = p.parse_declared_type(declared)
            if sql_type is None:
                value = first_row[index] if first_row is not None else None
                sql_type = p.infer_type(value) if value is not None else p.SqlType("nvarchar", 8000)
            columns.append((name, sql_type, not notnull))
        return columns

    def describe_rows(self, query: str) -> Iterator[tuple]:
        for ordinal, (name, sql, nullable) in enumerate(self.describe(query), start=1):
            yield (0, ordinal, name, int(nullable), sql.system_type_name, sql.max_length, sql.precision, sql.scale)

    DESCRIBE_COLUMNS = [
        ("is_hidden", p.SqlType("bit", 1, 1), False),
        ("column_ordinal", p.SqlType("int", 4, 10), False),
        ("name", p.SqlType("nvarchar", 256), True),
        ("is_nullable", p.SqlType("bit", 1, 1), False),
        ("system_type_name", p.SqlType("nvarchar", 512), True),
        ("max_length", p.SqlType("smallint", 2, 5), False),
        ("precision", p.SqlType("tinyint", 1, 3), False),
        ("scale", p.SqlType("tinyint", 1, 3), False),
    ]

    # -------------------------------------------------------------- faults
    def fault_for(self, batch: str) -> tuple | None:
        if "flux_faults" in batch.lower():
            return None
        try:
            rows = self.db.execute(
                "SELECT rowid, pattern, error_number, remaining, delay_seconds, after_rows FROM flux_faults "
                "WHERE remaining <> 0 ORDER BY rowid"
            ).fetchall()
        except sqlite3.OperationalError:
            return None
        for rowid, pattern, number, remaining, delay, after_rows in rows:
            if pattern.lower() in batch.lower():
                if remaining > 0:
                    changed = self.db.execute(
                        "UPDATE flux_faults SET remaining = remaining - 1 WHERE rowid = ? AND remaining > 0", (rowid,)
                    ).rowcount
                    if not changed:
                        continue
                return number, float(delay or 0), int(after_rows or 0), rowid
        return None

    def fault_gone(self, rowid: int) -> bool:
        """The fault's row was deleted: a delay it imposes ends early (a test releases a held query)."""
        return self.db.execute("SELECT 1 FROM flux_faults WHERE rowid = ?", (rowid,)).fetchone() is None


class _Writer:
    """Buffers tokens and sends full TDS packets as they fill (bounded memory while streaming)."""

    def __init__(self, sock: socket.socket, packet_size: int):
        self.sock, self.packet_size, self.buffer = sock, packet_size, bytearray()

    def add(self, data: bytes) -> None:
        self.buffer += data
        body = self.packet_size - p.HEADER.size
        if len(self.buffer) >= 8 * body:
            cut = len(self.buffer) - len(self.buffer) % body
            chunk = bytes(self.buffer[:cut])
            del self.buffer[:cut]
            self.sock.sendall(p.packets(p.TABULAR_RESULT, chunk, self.packet_size, last=False))

    def finish(self) -> None:
        self.sock.sendall(p.packets(p.TABULAR_RESULT, bytes(self.buffer), self.packet_size))
        self.buffer.clear()


class TdsHandler(socketserver.BaseRequestHandler):
    server: TdsServer

    def read_message(self) -> tuple[int, bytes] | None:
        payload, kind = bytearray(), None
        while True:
            header = self._recv_exact(p.HEADER.size)
            if header is None:
                return None
            kind, status, length, _, _, _ = p.HEADER.unpack(header)
            body = self._recv_exact(length - p.HEADER.size)
            if body is None:
                return None
            payload += body
            if status & p.STATUS_EOM:
                return kind, bytes(payload)

    def _recv_exact(self, size: int) -> bytes | None:
        data = bytearray()
        while len(data) < size:
            chunk = self.request.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return bytes(data)

    def send(self, payload: bytes) -> None:
        self.request.sendall(p.packets(p.TABULAR_RESULT, payload, self.packet_size))

    def handle(self) -> None:
        self.packet_size = 4096
        self.spid = self.server.next_spid()
        session = None
        try:
            message = self.read_message()
            if message and message[0] == p.PRELOGIN:
                self.send(p.prelogin_response())
                message = self.read_message()
            if not message or message[0] != p.LOGIN7:
                return
            login = p.parse_login7(message[1])
            session = self.login(login)
            if session is None:
                return
            while True:
                message = self.read_message()
                if message is None:
                    return
                kind, payload = message
                if kind == p.SQL_BATCH:
                    self.batch(session, payload)
                elif kind == p.ATTENTION:
                    self.send(p.done(p.DONE_ATTN))
                else:
                    self.send(
                        p.message(50000, f"flux TDS test server: packet type {kind:#x} is not supported")
                        + p.done(p.DONE_ERROR)
                    )
        except (ConnectionError, OSError):
            return
        finally:
            if session is not None:
                session.close()

    def login(self, login: p.Login) -> Session | None:
        users = self.server.users()
        if users.get(login.user) != login.password:
            log.info("login failed for %r", login.user)
            self.send(p.message(18456, MESSAGES[18456][1].format(login.user), severity=14) + p.done(p.DONE_ERROR))
            return None
        if login.database and login.database.lower() != self.server.database.lower():
            self.send(p.message(4060, MESSAGES[4060][1].format(login.database), severity=11) + p.done(p.DONE_ERROR))
            return None
        if 512 <= login.packet_size <= 32767:
            self.packet_size = login.packet_size
        version = min(login.tds_version, 0x74000004)
        self.send(
            p.envchange(1, self.server.database, "master")
            + p.message(5701, f"Changed database context to '{self.server.database}'.", severity=0, info=True)
            + p.envchange_collation()
            + p.loginack(version)
            + p.envchange(4, str(self.packet_size), "4096")
            + p.done()
        )
        return Session(self.server.db_path, self.server.database, self.spid, login.user)

    # ---------------------------------------------------------------- batches
    def batch(self, session: Session, payload: bytes) -> None:
        headers_length = int.from_bytes(payload[:4], "little")
        text = payload[headers_length:].decode("utf-16-le", "replace") if headers_length < len(payload) else ""
        log.debug("spid %s batch: %s", self.spid, text[:500])
        writer = _Writer(self.request, self.packet_size)
        admission = None
        try:
            statements = self.statements(text)
            # Faults and the capacity model hit batches that read or change data, not metadata look-ups.
            touches_data = any(kind == "sql" for kind, _ in statements)
            if server_state.reads_views(text):  # a look at the server's state: not load, no fault
                touches_data = False
                try:
                    server_state.snapshot(session.db, session.login)
                except server_state.Denied:
                    raise TdsError(300, spid=self.spid) from None
            if touches_data and not _CONTROL_TABLES.search(text):
                try:
                    admission = capacity.admit(
                        session.db, text, sleep=self.sleep_unless_gone, spid=self.spid, login=session.login
                    )
                except capacity.Overloaded as exc:
                    raise TdsError(exc.error_number, str(exc), spid=self.spid) from None
            fault = session.fault_for(text) if touches_data else None
            if admission is not None and admission.victim is not None:  # a share of its work, then it fails
                self.sleep_unless_gone((fault[1] if fault else 0.0) * admission.victim_after)
                victim, admission = admission.fail(), None
                raise TdsError(victim.error_number, str(victim), spid=self.spid)
            if fault is not None:
                number, delay, after_rows, rowid = fault
                if delay:
                    self.sleep_unless_gone(delay, released=lambda: session.fault_gone(rowid))
                if number and not after_rows:
                    raise TdsError(number, "injected fault", spid=self.spid)
            for index, (kind, sql) in enumerate(statements):
                more = p.DONE_MORE if index < len(statements) - 1 else p.DONE_FINAL
                limit = after_rows if fault and fault[0] and fault[2] else None
                self.run(session, writer, kind, sql, more, limit, fault[0] if fault else None)
        except TdsError as exc:
            writer.add(p.message(exc.number, str(exc), severity=exc.severity) + p.done(p.DONE_ERROR))
        except sqlite3.Error as exc:
            err = _translate_sqlite_error(exc, self.spid)
            writer.add(p.message(err.number, str(err), severity=err.severity) + p.done(p.DONE_ERROR))
        except (ConnectionError, OSError):
            raise
        except Exception as exc:  # a test server must answer, not drop the connection
            log.exception("spid %s: internal error", self.spid)
            writer.add(p.message(50000, f"flux TDS test server internal error: {exc}") + p.done(p.DONE_ERROR))
        finally:
            if admission is not None:
                admission.leave()
        writer.finish()

    def statements(self, text: str) -> list[tuple[str, str]]:
        fmtonly = _FMTONLY.match(text)
        if fmtonly:
            return [("fmtonly", fmtonly.group(1))]
        out = []
        for statement in _split_statements(text):
            if _NOOP.match(statement):
                out.append(("noop", statement))
            elif _USE.match(statement):
                out.append(("use", _USE.match(statement).group(1)))
            elif _DESCRIBE.match(statement):
                out.append(("describe", _DESCRIBE.match(statement).group(1).replace("''", "'")))
            else:
                out.append(("sql", statement))
        return out

    def run(
        self,
        session: Session,
        writer: _Writer,
        kind: str,
        sql: str,
        more: int,
        fail_after: int | None,
        fail_number: int | None,
    ) -> None:
        if kind == "noop":
            writer.add(p.done(more))
            return
        if kind == "use":
            if sql.lower() != session.database.lower():
                raise TdsError(4060, sql, spid=self.spid)
            writer.add(p.envchange(1, session.database, session.database) + p.done(more))
            return
        if kind == "describe":
            rows = list(session.describe_rows(session.translate(sql)))
            self.stream(writer, Session.DESCRIBE_COLUMNS, iter(rows), more, None, None)
            return
        translated = session.translate(sql)
        if kind == "fmtonly":
            writer.add(p.colmetadata(session.describe(translated)) + p.done(more, rows=0, curcmd=p.CURCMD_SELECT))
            return
        cursor = session.db.execute(translated)
        if cursor.description is None:
            writer.add(p.done(more, rows=max(cursor.rowcount, 0)))
            return
        first = cursor.fetchmany(256)
        sample = [next((r[i] for r in first if r[i] is not None), None) for i in range(len(cursor.description))]
        columns = session.describe(translated, first_row=sample)

        def rows() -> Iterator[tuple]:
            yield from first
            while True:
                chunk = cursor.fetchmany(1000)
                if not chunk:
                    return
                yield from chunk

        self.stream(writer, columns, rows(), more, fail_after, fail_number)

    def stream(
        self,
        writer: _Writer,
        columns,
        rows: Iterator[tuple],
        more: int,
        fail_after: int | None,
        fail_number: int | None,
    ) -> None:
        encoders = [p.encoder(sql) for _, sql, _ in columns]
        writer.add(p.colmetadata(columns))
        count, row_token = 0, bytes([p.ROW])
        for row in rows:
            if fail_after is not None and count >= fail_after:
                raise TdsError(fail_number, "injected fault", spid=self.spid)
            try:
                writer.add(row_token + b"".join(map(call, encoders, row)))
            except (ArithmeticError, ValueError) as exc:
                raise TdsError(8115 if isinstance(exc, ArithmeticError) else 50000, str(exc), spid=self.spid) from exc
            count += 1
        writer.add(p.done(more, rows=count, curcmd=p.CURCMD_SELECT))

    def sleep_unless_gone(self, seconds: float, released: Callable[[], bool] | None = None) -> None:
        """Sleep like a hung server, but stop as soon as the client hangs up (or ``released`` says so)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.request], [], [], min(0.2, deadline - time.monotonic()))
            if readable and not self.request.recv(1, socket.MSG_PEEK):
                raise ConnectionError("client went away")
            if released is not None and released():
                return


class TdsServer(socketserver.ForkingTCPServer):
    """One process per connection (as SQL Server serves sessions in parallel): N clients use N cores."""

    allow_reuse_address = True
    max_children = 256

    def __init__(self, address: tuple[str, int], *, db_path: Path, database: str, users_file: Path):
        self.db_path, self.database, self.users_file = Path(db_path), database, Path(users_file)
        db = sqlite3.connect(str(self.db_path))
        try:
            db.execute(FAULTS_DDL)
            capacity.create_tables(db)
            db.execute(server_state.DENIED_DDL)
            db.execute("DELETE FROM flux_running")  # what an earlier server's connections left
            db.commit()
        finally:
            db.close()
        super().__init__(address, TdsHandler)

    def users(self) -> dict[str, str]:
        return json.loads(self.users_file.read_text())

    def next_spid(self) -> int:
        """The session id of the connection served by this (forked) process."""
        return 51 + os.getpid() % 30000
