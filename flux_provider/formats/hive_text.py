"""Hive LazySimpleSerDe text: the encoding of every chunk the upload step writes.

Rules (as Spark's/Hive's LazySimpleSerDe reads them with ``ESCAPED BY '\\\\'``,
``serialization.null.format='\\\\N'`` and ``serialization.escape.crlf='true'``):

* fields end with ``field`` (``\\x01``), rows with ``row`` (``\\n``);
* NULL is ``null`` (``\\N``); an empty string is nothing between delimiters;
* inside values a backslash becomes ``\\\\``, each of the field / collection /
  map-key delimiters gets a backslash before it, CR and LF become ``\\r`` and
  ``\\n`` (a backslash before a *real* newline does not protect it: the line
  reader splits first).

:class:`BcpToHive` converts whole blocks of a bcp export file with a fixed
sequence of ``bytes.replace`` passes (each skipped when its byte is absent),
so no Python code runs per row or per field.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from flux_provider.formats.export_file import EMPTY

#: Bytes the encoder escapes; the export's terminators must not contain any of them.
_SPECIAL = (b"\\", b"\r", b"\n", b"\x00", b"\x01", b"\x02", b"\x03")


@dataclass(frozen=True)
class HiveTextEncoding:
    field: str = "\x01"
    collection: str = "\x02"
    map_key: str = "\x03"
    row: str = "\n"
    null: str = "\\N"
    escape: str = "\\"

    def __post_init__(self):
        delimiters = [self.field, self.collection, self.map_key]
        if any(len(d) != 1 for d in delimiters) or len(set(delimiters)) != 3:
            raise ValueError(f"Hive delimiters must be three distinct single characters, got {delimiters!r}")
        if self.row != "\n":
            raise ValueError("Hive text tables only support '\\n' as the line delimiter")
        if self.escape != "\\":
            raise ValueError("only the backslash escape is supported")

    def to_dict(self) -> dict:
        return asdict(self)

    def table_properties(self) -> dict[str, str]:
        """SERDEPROPERTIES a Hive table needs to read (and write) this encoding."""
        return {"serialization.null.format": self.null, "serialization.escape.crlf": "true"}


class BcpToHive:
    """Converts blocks of whole bcp rows to Hive text; counts rows and checks field counts."""

    def __init__(self, field_terminator: str, row_terminator: str, columns: int,
                 encoding: HiveTextEncoding | None = None):
        self.ft, self.rt = field_terminator.encode(), row_terminator.encode()
        for name, term in (("field_terminator", self.ft), ("row_terminator", self.rt)):
            bad = [b for b in _SPECIAL if b in term]
            if bad:
                raise ValueError(f"{name} {term!r} contains {bad!r}, which the Hive encoding escapes; "
                                 "export with terminators free of backslash, CR, LF, NUL and \\x01-\\x03")
        self.columns = columns
        self.enc = encoding or HiveTextEncoding()
        e = self.enc
        for delimiter in (e.field, e.collection, e.map_key):
            if delimiter.encode() in self.ft + self.rt:
                raise ValueError(f"the Hive delimiter {delimiter!r} occurs in the export terminators "
                                 f"{field_terminator!r}/{row_terminator!r}; choose other terminators or delimiters")
        self._escapes = [(b"\\", b"\\\\")] + [
            (d.encode(), b"\\" + d.encode()) for d in (e.field, e.collection, e.map_key)
        ] + [(b"\n", b"\\n"), (b"\r", b"\\r")]
        self._null = e.null.encode()

    def rows_in(self, block: bytes) -> int:
        return block.count(self.rt)

    def encode(self, block: bytes) -> tuple[bytes, int]:
        """Hive text for ``block`` (whole rows, ending with the row terminator) and its row count.

        Raises ValueError if a row does not have ``columns`` fields (a terminator inside a value,
        or a cut block).
        """
        if not block:
            return b"", 0
        if not block.endswith(self.rt):
            raise ValueError("block does not end with the row terminator")
        field, row = self.enc.field.encode(), b"\n"
        if field not in block and row not in block:
            return self._encode_fast(block, field)
        return self._encode_general(block, field)

    def _check(self, rows: int, fields: int) -> None:
        if fields != rows * (self.columns - 1):
            raise ValueError(f"{rows} rows hold {fields} field terminators, expected {rows * (self.columns - 1)}: "
                             "a value contains a terminator or the data is cut")

    def _escape(self, block: bytes, skip: tuple[bytes, ...] = ()) -> bytes:
        for plain, escaped in self._escapes:
            if plain not in skip and plain in block:
                block = block.replace(plain, escaped)
        return block

    def _encode_fast(self, block: bytes, field: bytes) -> tuple[bytes, int]:
        """No raw field delimiter or newline in the data (the common case): after the NULL pass the
        terminators become the one-byte Hive delimiters, and the row/field checks are one-byte counts."""
        data = _mark_nulls(self.rt + self._escape(block, skip=(field, b"\n")), self.ft, self.rt, self._null)
        data = data.replace(self.ft, field).replace(self.rt, b"\n")
        rows = data.count(b"\n") - 1
        self._check(rows, data.count(field))  # NULL markers add no delimiter
        return data[1:], rows

    def _encode_general(self, block: bytes, field: bytes) -> tuple[bytes, int]:
        rows = block.count(self.rt)
        self._check(rows, block.count(self.ft))
        data = self._escape(block)
        data = _mark_nulls(self.rt + data, self.ft, self.rt, self._null)
        return data[len(self.rt):].replace(self.ft, field).replace(self.rt, b"\n"), rows


def _mark_nulls(data: bytes, ft: bytes, rt: bytes, null: bytes) -> bytes:
    """Empty fields (two separators in a row) become ``null``; bcp's one-NUL empty strings become empty.
    ``data`` starts with a row separator so the first field is delimited on both sides too."""
    for left in (ft, rt):
        for right in (ft, rt):
            pair = left + right
            while pair in data:  # twice at most: replace() does not see overlapping pairs
                data = data.replace(pair, left + null + right)
    if EMPTY in data:
        for left in (ft, rt):
            for right in (ft, rt):
                pattern = left + EMPTY + right
                while pattern in data:
                    data = data.replace(pattern, left + right)
    return data


def encode_value(value: str | None, enc: HiveTextEncoding) -> str:
    if value is None:
        return enc.null
    value = value.replace("\\", "\\\\")
    for d in (enc.field, enc.collection, enc.map_key):
        value = value.replace(d, "\\" + d)
    return value.replace("\n", "\\n").replace("\r", "\\r")


def csv_to_hive(lines: Iterable[str], enc: HiveTextEncoding | None = None, *, empty_is_null: bool = True,
                header: bool = False) -> Iterator[str]:
    """RFC 4180 CSV rows -> Hive text lines (slow path: per field). An empty field is NULL unless
    ``empty_is_null`` is False (CSV cannot tell an empty string from a missing value)."""
    enc = enc or HiveTextEncoding()
    reader = csv.reader(lines)
    if header:
        next(reader, None)
    for row in reader:
        yield enc.field.join(encode_value(None if (v == "" and empty_is_null) else v, enc) for v in row) + "\n"


def decode(data: bytes, enc: HiveTextEncoding | None = None) -> list[list[str | None]]:
    """Reference reader: what LazySimpleSerDe returns for ``data`` (tests and verification)."""
    enc = enc or HiveTextEncoding()
    text = data.decode("utf-8")
    rows: list[list[str | None]] = []
    row: list[str | None] = []
    current = io.StringIO()
    raw: list[str] = []
    i, n = 0, len(text)

    def end_field():
        value = current.getvalue()
        row.append(None if "".join(raw) == enc.null else value)
        current.seek(0)
        current.truncate()
        raw.clear()

    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            nxt = text[i + 1]
            current.write({"n": "\n", "r": "\r"}.get(nxt, nxt))
            raw.append(ch + nxt)
            i += 2
            continue
        if ch == enc.field:
            end_field()
        elif ch == "\n":
            end_field()
            rows.append(row)
            row = []
        else:
            current.write(ch)
            raw.append(ch)
        i += 1
    if row or current.getvalue():
        raise ValueError("data does not end with a row delimiter")
    return rows
