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
sequence of Arrow ``replace_substring`` passes (escapes only when their byte
occurs), so no Python code runs per row or per field and, since Arrow's kernels
release the GIL, blocks encode on several cores at once. :class:`CsvToHive` does
the same for RFC 4180 CSV, from batches of Arrow's CSV reader.
"""

from __future__ import annotations

import io
import re
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from flux_provider.encoding import HiveTextEncoding
from flux_provider.formats.export_file import EMPTY, FORMAT, FORMAT_V1, row_blocks

__all__ = ["BadRow", "BcpToHive", "CsvToHive", "HiveTextEncoding", "decode"]

#: Bytes the encoder escapes; the export's terminators must not contain any of them.
_SPECIAL = (b"\\", b"\r", b"\n", b"\x00", b"\x01", b"\x02", b"\x03")


class BcpToHive:
    """Converts blocks of whole bcp rows to Hive text; counts rows and checks field counts.

    Every pass is an Arrow ``replace_substring`` / ``count_substring`` kernel over the whole block,
    which runs in C++ without the GIL: blocks encode in parallel on several threads
    (:func:`flux_provider.formats.chunker.chunks`), and no Python code runs per row or field.
    """

    def __init__(
        self,
        field_terminator: str,
        row_terminator: str,
        columns: int,
        encoding: HiveTextEncoding | None = None,
        *,
        format: str = FORMAT,
    ):
        self.ft, self.rt = field_terminator.encode(), row_terminator.encode()
        for name, term in (("field_terminator", self.ft), ("row_terminator", self.rt)):
            bad = [b for b in _SPECIAL if b in term]
            if bad:
                raise ValueError(
                    f"{name} {term!r} contains {bad!r}, which the Hive encoding escapes; "
                    "export with terminators free of backslash, CR, LF, NUL and \\x01-\\x03"
                )
        if self.ft == self.rt or self.ft in self.rt or self.rt in self.ft:
            raise ValueError(
                f"the field and row terminators {field_terminator!r}/{row_terminator!r} must differ "
                "and neither may contain the other"
            )
        self.columns = columns
        self.enc = encoding or HiveTextEncoding()
        e = self.enc
        for delimiter in (e.field, e.collection, e.map_key):
            if delimiter.encode() in self.ft + self.rt:
                raise ValueError(
                    f"the Hive delimiter {delimiter!r} occurs in the export terminators "
                    f"{field_terminator!r}/{row_terminator!r}; choose other terminators or delimiters"
                )
        self.field = e.field.encode()
        self._escapes = e.escapes()
        null = e.null.encode()
        # (pattern, replacement) for NULLs (an empty field) and bcp's one-NUL empty strings, each
        # between two separators; the block is prefixed with a row terminator, so the first field
        # has one on its left too. Two rows in a row (an empty one-column row) only exist with one column.
        sides = [(self.ft, self.ft), (self.ft, self.rt), (self.rt, self.ft)]
        if columns == 1:
            sides.append((self.rt, self.rt))
        self._nulls = [(left + right, left + null + right) for left, right in sides]
        self._empties = [(left + EMPTY + right, left + right) for left, right in sides]
        # a field of n + 1 NULs is a string of n NULs (format 2): drop the first NUL of such a field
        ft, rt = re.escape(self.ft), re.escape(self.rt)
        nuls = rb"(?:(?<=%b)|(?<=%b))\x00(?=\x00+(?:%b|%b))" % (ft, rt, ft, rt)
        self._nuls = None if format == FORMAT_V1 else re.compile(nuls)

    def encode_stream(self, stream: BinaryIO, block_size: int, workers: int) -> Iterator[tuple[memoryview, int]]:
        """(Hive text, rows) of each block of whole rows of ``stream``, in order, ``workers`` at once."""
        return _in_order(self.encode, row_blocks(stream, self.rt, block_size), workers)

    def encode(self, block: bytes) -> tuple[memoryview, int]:
        """Hive text for ``block`` (whole rows, ending with the row terminator) and its row count.

        Raises ValueError if a row does not have ``columns`` fields (a terminator inside a value,
        or a cut block).
        """
        if not block:
            return memoryview(b""), 0
        if not block.endswith(self.rt):
            raise ValueError("block does not end with the row terminator")
        general = self.field in block or b"\n" in block
        if general:  # a raw delimiter or newline in the data: count the terminators before escaping
            raw = _array(block)
            rows, fields = _count(raw, self.rt), _count(raw, self.ft)
            self._check(block, rows, fields)
        data = _array(self.rt + block)
        for plain, escaped in self._escapes:
            if plain in block:  # a memchr: most blocks need few of these passes
                data = _replace(data, plain, escaped)
        for pattern, replacement in self._nulls:
            data = _replace_all(data, pattern, replacement)
        if EMPTY in block:
            for pattern, replacement in self._empties:
                data = _replace_all(data, pattern, replacement)
            if self._nuls and EMPTY + EMPTY in block:  # rare: Python's re (RE2 has no lookaround)
                data = _array(self._nuls.sub(b"", _values(data)))
        data = _replace(_replace(data, self.ft, self.field), self.rt, b"\n")
        if not general:  # the one-byte delimiters are now the only ones: count them (NULL markers add none)
            rows = _count(data, b"\n") - 1
            self._check(block, rows, _count(data, self.field))
        return _values(data)[1:], rows

    def _check(self, block: bytes, rows: int, fields: int) -> None:
        """The block's field count is right, or :class:`BadRow` names the first row that is not."""
        expected = self.columns - 1
        if fields == rows * expected:
            return
        for number, row in enumerate(block.split(self.rt)[:-1], 1):  # only on failure: find the row
            if row.count(self.ft) != expected:
                raise BadRow(
                    number,
                    f"has {row.count(self.ft) + 1} fields, expected {self.columns} (a value "
                    f"holds a terminator, or the data is cut): {bytes(row[:120])!r}",
                )
        raise BadRow(rows, f"{rows} rows hold {fields} field terminators, expected {rows * expected}")


class BadRow(ValueError):
    """A row without the expected fields; ``row`` counts from 1 within the encoded block."""

    def __init__(self, row: int, detail: str):
        super().__init__(f"row {row} of the block {detail}")
        self.row, self.detail = row, detail


# ---------------------------------------------------------------- Arrow kernels over one binary value
def _array(data: bytes):
    """A one-value Arrow binary array over ``data`` (no copy)."""
    offsets = pa.py_buffer(struct.pack("<qq", 0, len(data)))
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])


def _replace(data, pattern: bytes, replacement: bytes):
    return pc.replace_substring(data, pattern, replacement)


def _replace_all(data, pattern: bytes, replacement: bytes):
    """Replace until none is left: one pass misses overlapping occurrences (``ft ft ft``)."""
    while True:
        before = _length(data)
        data = _replace(data, pattern, replacement)
        if _length(data) == before or not _overlaps(pattern):
            return data


def _overlaps(pattern: bytes) -> bool:
    return any(pattern[:k] == pattern[-k:] for k in range(1, len(pattern)))


def _length(data) -> int:
    return pc.binary_length(data)[0].as_py()


def _count(data, pattern: bytes) -> int:
    return pc.count_substring(data, pattern)[0].as_py()


def _values(array) -> memoryview:
    """The bytes of all of a binary ``array``'s values, back to back (no copy)."""
    if not len(array):
        return memoryview(b"")
    width, code = (8, "<q") if pa.types.is_large_binary(array.type) else (4, "<i")
    offsets = array.buffers()[1]
    (start,), (end,) = (struct.unpack_from(code, offsets, (array.offset + i) * width) for i in (0, len(array)))
    return memoryview(array.buffers()[2])[start:end]


def _in_order(encode: Callable, items: Iterable, workers: int) -> Iterator:
    """``map(encode, items)`` on ``workers`` threads, in order, at most ``workers + 1`` items queued
    (Arrow's kernels release the GIL, so the threads run on as many cores)."""
    if workers <= 1:
        yield from map(encode, items)
        return
    queue: deque[Future] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="hive-encode") as pool:
        try:
            for item in items:
                queue.append(pool.submit(encode, item))
                if len(queue) > workers:
                    yield queue.popleft().result()
            while queue:
                yield queue.popleft().result()
        finally:
            for future in queue:
                future.cancel()


class CsvToHive:
    """RFC 4180 CSV -> Hive text, read by Arrow's CSV reader (quoted fields may hold the delimiter,
    doubled quotes and newlines; the file is UTF-8 or any ASCII-compatible bytes, passed through).

    CSV has no NULL of its own. By default an unquoted empty field is NULL and a quoted one
    (``""``) an empty string, as PostgreSQL's ``COPY ... CSV`` writes them; with
    ``empty_is_null=False`` nothing is NULL. Each parsed batch is escaped column by column and
    joined with Arrow kernels: no Python code runs per row.
    """

    def __init__(
        self,
        columns: int,
        encoding: HiveTextEncoding | None = None,
        *,
        header: bool = False,
        delimiter: str = ",",
        quote: str = '"',
        empty_is_null: bool = True,
    ):
        import pyarrow.csv as pcsv

        self.columns, self.enc = columns, encoding or HiveTextEncoding()
        names = [f"c{i}" for i in range(columns)]
        self._options = dict(
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter, quote_char=quote, newlines_in_values=True, ignore_empty_lines=False
            ),  # an empty line: one NULL column
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.binary() for n in names},
                null_values=[""],
                strings_can_be_null=empty_is_null,
                quoted_strings_can_be_null=False,
            ),
        )
        self._read = lambda block_size: pcsv.ReadOptions(
            column_names=names, skip_rows=int(header), block_size=block_size, use_threads=False
        )
        self._open = pcsv.open_csv
        self._escapes = self.enc.escapes()
        self._null = pa.scalar(self.enc.null.encode(), pa.binary())
        self._row_end = pa.scalar(b"\n", pa.binary())

    def encode_stream(self, stream: BinaryIO, block_size: int, workers: int) -> Iterator[tuple[memoryview, int]]:
        """(Hive text, rows) of each parsed batch of ``stream``, in order (the reader counts rows, so a
        malformed one is named by its number)."""
        try:
            reader = self._open(stream, read_options=self._read(block_size), **self._options)
            yield from _in_order(self.encode_batch, reader, workers)
        except pa.ArrowInvalid as exc:
            raise ValueError(
                f"the CSV does not parse: {exc} (rows are CSV records counted from 1, a header included)"
            ) from exc

    def encode_batch(self, batch) -> tuple[memoryview, int]:
        fields = []
        for column in batch.columns:
            for plain, escaped in self._escapes:
                column = pc.replace_substring(column, plain, escaped)
            fields.append(pc.fill_null(column, self._null))
        rows = pc.binary_join_element_wise(*fields, self.enc.field.encode())
        return _values(pc.binary_join_element_wise(rows, self._row_end, b"")), batch.num_rows


def decode(data: bytes, enc: HiveTextEncoding | None = None) -> list[list[str | None]]:
    """Reference reader: what LazySimpleSerDe returns for ``data`` (tests and verification)."""
    enc = enc or HiveTextEncoding()
    text = bytes(data).decode("utf-8")
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
