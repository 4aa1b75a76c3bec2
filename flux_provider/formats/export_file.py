"""The export file: what ``BcpExportOperator`` writes and ``S3ChunkUploadOperator`` reads.

bcp's character mode (``-c``) cannot quote or escape, so the file relies on
terminators that do not occur in data, and on bcp's conventions, which
Microsoft's bcp and FreeTDS freebcp share (checked against the real freebcp):

* fields end with ``field_terminator``, rows with ``row_terminator`` (defaults
  below: multi-character, with ASCII separator control characters, and free of
  the bytes the Hive encoder escapes, so it can work on whole blocks);
* NULL is an empty field; an empty string (or empty binary) is one NUL byte,
  and a string of n NUL characters (n >= 1) is n + 1 NUL bytes, so that a
  lone U+0000 stays apart from the empty string (version 2 of the format: bcp
  writes both as one NUL byte, so the bcp engine's query appends the extra NUL,
  see :func:`export_query`; version 1 files, without it, are still read);
* text is UTF-8; integers and decimals are plain digits (decimals with exactly
  ``scale`` digits after the point); float is ``%.17g`` (exact round trip);
  bit is 0/1; binary is lowercase hex; date is ``YYYY-MM-DD``; datetime2/time
  carry ``scale`` fractional digits (the export query renders them with
  ``CONVERT(VARCHAR(n), col, 121)`` because freebcp would cut them to ms).

Both engines (bcp and DB-API) produce byte-identical files for the same data.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from decimal import Context, Decimal
from pathlib import Path
from typing import BinaryIO

from flux_provider.columns import Column

FORMAT = "flux-bcp-char/2"
FORMAT_V1 = "flux-bcp-char/1"  # a lone U+0000 written as one NUL byte, like the empty string
DEFAULT_FIELD_TERMINATOR = "\x1f|~"
DEFAULT_ROW_TERMINATOR = "\x1e|~"
EMPTY = b"\x00"


# SQL Server types whose bcp character rendering is lossy or ambiguous, and how the
# export query renders them instead (the same text for both engines).
def _rendering(column: Column, *, bcp: bool = False) -> str | None:
    if bcp and column.type_name in ("varchar", "nvarchar"):
        return _nul_escape(column)
    if column.type_name in ("datetime2", "datetimeoffset"):
        length = 19 + (column.scale + 1 if column.scale else 0)
        return f"CONVERT(VARCHAR({length}), {{0}}, 121)"
    if column.type_name in ("datetime", "smalldatetime"):
        return "CONVERT(VARCHAR(23), {0}, 121)"
    if column.type_name == "date":
        return "CONVERT(VARCHAR(10), {0}, 23)"
    if column.type_name == "time":
        return f"CONVERT(VARCHAR({8 + (column.scale + 1 if column.scale else 0)}), {{0}})"
    return None


def _nul_escape(column: Column) -> str:
    """A string of NUL characters gets one more (bcp writes '' and a lone NUL alike, as one NUL byte).

    The inner CASE runs only for values that start with NUL; the binary collation makes REPLACE see NUL.
    """
    nul = "NCHAR(0)" if column.type_name == "nvarchar" else "CHAR(0)"
    only_nuls = "DATALENGTH(REPLACE(CAST({0} AS NVARCHAR(MAX)) COLLATE Latin1_General_BIN2, NCHAR(0), N'')) = 0"
    return (
        f"CASE WHEN UNICODE({{0}}) = 0 THEN CASE WHEN {only_nuls} THEN CONCAT({{0}}, {nul}) ELSE {{0}} END "
        "ELSE {0} END"
    )


def quote_name(name: str) -> str:
    return "[" + name.replace("]", "]]") + "]"


_ORDER_BY = re.compile(r"\border\s+by\b", re.I)


def export_query(
    columns: list[Column], *, table: str | None = None, query: str | None = None, bcp: bool = False
) -> str:
    """The SELECT an engine runs: every column, date/time ones rendered losslessly as text, and for the
    ``bcp`` engine (which cannot tell a lone NUL from the empty string) strings of NULs with one more.

    ``table`` is an already validated, quoted name; ``query`` a user query (wrapped as a
    derived table only when a column needs rendering).
    """
    exprs = []
    for column in columns:
        rendering = _rendering(column, bcp=bcp)
        name = quote_name(column.name)
        exprs.append(f"{rendering.format(name)} AS {name}" if rendering else name)
    if table is not None:
        return f"SELECT {', '.join(exprs)} FROM {table}"
    if query is None:
        raise ValueError("export_query needs a table or a query")
    rendered = [c.name for c in columns if _rendering(c, bcp=bcp)]
    if not rendered:
        return query
    if _ORDER_BY.search(query):
        raise ValueError(
            f"the query has an ORDER BY and returns columns ({', '.join(rendered)}) that the export renders "
            "(date/time with CONVERT to keep full precision; strings for bcp, to keep a lone NUL character), "
            "which wraps the query in a derived table: remove the ORDER BY (row order does not matter to Hive)"
        )
    return f"SELECT {', '.join(exprs)} FROM ({query}) AS flux_export"


# ------------------------------------------------------------------ writing (DB-API engine)
class TerminatorInData(ValueError):
    def __init__(self, row: int, column: str, terminator: str):
        self.row, self.column = row, column
        super().__init__(
            f"row {row}, column {column!r} contains the terminator {terminator!r}; "
            "choose other field_terminator/row_terminator for this data set"
        )


_DEC = Context(prec=80)


def renderer(column: Column):
    """A function value -> bytes in the file's rendering for ``column`` (DB-API engine)."""
    scale_exp = Decimal(1).scaleb(-column.scale) if column.type_name in ("decimal", "numeric") else None

    def render(value) -> bytes:
        if value is None:
            return b""
        if isinstance(value, str):
            if not value.strip("\x00"):  # '' -> one NUL byte, n NULs -> n + 1
                return EMPTY + value.encode()
            return value.encode("utf-8", "surrogatepass")
        if isinstance(value, bool):
            return b"1" if value else b"0"
        if isinstance(value, int):
            return str(value).encode()
        if isinstance(value, Decimal):
            if scale_exp is not None:
                value = value.quantize(scale_exp, context=_DEC)
            return format(value, "f").encode()
        if isinstance(value, float):
            return b"0" if value == 0 else (b"%.17g" % value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).hex().encode() if len(value) else EMPTY
        if isinstance(value, dt.datetime):
            text = value.strftime("%Y-%m-%d %H:%M:%S")
            digits = column.scale if column.scale else (6 if value.microsecond else 0)
            return (text + (f".{value.microsecond:06d}0"[: digits + 1] if digits else "")).encode()
        if isinstance(value, dt.date):
            return value.isoformat().encode()
        if isinstance(value, dt.time):
            return value.isoformat().encode()
        return str(value).encode()

    return render


# ------------------------------------------------------------------ reading
MAX_ROW_BYTES = 256 * 2**20  # a row longer than this means the row terminator is wrong


def row_blocks(stream: BinaryIO, terminator: bytes, block_size: int) -> Iterator[bytes]:
    """``stream`` read in blocks of whole rows (a row cut at a block's end moves to the next)."""
    pending = b""
    while block := stream.read(block_size):
        data = pending + block if pending else block
        cut = data.rfind(terminator)
        if cut < 0:
            if len(data) > MAX_ROW_BYTES:
                raise ValueError(f"no row terminator in {len(data)} bytes: wrong row_terminator?")
            pending = data
            continue
        end = cut + len(terminator)
        pending = data[end:]
        yield data[:end]
    if pending:
        raise ValueError(f"the export ends with {len(pending)} bytes after the last row terminator: it is truncated")


def iter_records(
    path: Path, field_terminator: str, row_terminator: str, *, block_size: int = 1 << 20
) -> Iterator[list[bytes]]:
    """Stream the file's rows as lists of raw fields (memory: one block plus one row)."""
    field_t, row_t = field_terminator.encode(), row_terminator.encode()
    with open(path, "rb") as fh:
        try:
            for block in row_blocks(fh, row_t, block_size):
                for row in block.split(row_t)[:-1]:
                    yield row.split(field_t)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc


def parse(raw: bytes, column: Column, format: str = FORMAT):
    """The Python value of one raw field (tests and decoders): None, '', or the typed value."""
    if raw == b"":
        return None
    if raw == EMPTY:
        return b"" if column.type_name in ("varbinary", "binary", "image") else ""
    if format != FORMAT_V1 and not raw.strip(EMPTY):
        return raw[1:].decode()
    text = raw.decode("utf-8")
    kind = column.type_name
    if kind in ("tinyint", "smallint", "int", "bigint"):
        return int(text)
    if kind == "bit":
        return text == "1"
    if kind in ("decimal", "numeric", "money", "smallmoney"):
        return Decimal(text)
    if kind in ("float", "real"):
        return float(text)
    if kind in ("varbinary", "binary", "image"):
        return bytes.fromhex(text)
    return text


class TerminatorCounter:
    """Counts a terminator in data fed block by block; one split across two blocks counts once."""

    def __init__(self, terminator: bytes):
        self.terminator, self.count, self._tail = terminator, 0, b""

    def feed(self, block: bytes) -> None:
        data = self._tail + block
        self.count += data.count(self.terminator)
        # keep enough bytes to catch a terminator split across blocks, without recounting one
        keep = len(self.terminator) - 1
        last = data.rfind(self.terminator)
        self._tail = data[max(len(data) - keep, last + len(self.terminator) if last >= 0 else 0) :] if keep else b""


def scan(path: Path, field_terminator: str, row_terminator: str, *, block_size: int = 1 << 20) -> tuple[int, int]:
    """(row terminators, field terminators) in the file, counted in one streaming pass."""
    rows, fields = TerminatorCounter(row_terminator.encode()), TerminatorCounter(field_terminator.encode())
    with open(path, "rb") as fh:
        while block := fh.read(block_size):
            rows.feed(block)
            fields.feed(block)
    return rows.count, fields.count
