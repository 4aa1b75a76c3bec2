"""Shared test data and pure helpers (not tests): the nasty values every stage must keep exactly,
the encoders' reference values, a task context."""

from __future__ import annotations

import zlib
from types import SimpleNamespace

from flux_provider.formats import export_file as fmt

NASTY_DDL = """CREATE TABLE dbo.{name} (
    id BIGINT NOT NULL, txt NVARCHAR(400), amount DECIMAL(38,10), ratio FLOAT, flag BIT,
    seen DATETIME2(7), day DATE, blob VARBINARY(300), small INT
)"""


NASTY_ROWS = [
    (1, None, None, None, None, None, None, None, None),
    (2, "", "0.0000000000", 0.0, 0, "2024-02-29 23:59:59.1234567", "2024-02-29", b"", 0),
    (
        3,
        "hive \x01 field \x02 item \x03 key",
        "9999999999999999999999999999.9999999999",
        0.1,
        1,
        "9999-12-31 23:59:59.9999999",
        "9999-12-31",
        bytes(range(256)),
        2147483647,
    ),
    (
        4,
        "line\nfeed\r\ncarriage\rtab\tback\\slash",
        "-9999999999999999999999999999.9999999999",
        -1e300,
        0,
        "0001-01-01 00:00:00.0000000",
        "0001-01-01",
        b"\x00",
        -2147483648,
    ),
    (
        5,
        "quotes \" ' `, emoji 🎬🍿, accents ü é ñ, CJK 中文",
        "-0.0000000001",
        5e-324,
        1,
        "2026-11-23 12:00:00.0000001",
        "2026-11-23",
        b"\\\n\r\t",
        7,
    ),
    (
        6,
        "parts of terminators: \x1f alone, \x1e alone, |~ alone, ~| too",
        "1.5",
        1 / 3,
        1,
        "2000-01-01 00:00:00.5000000",
        "2000-01-01",
        b"\xff",
        None,
    ),
    (10, "\x00", None, None, None, None, None, None, None),  # a lone NUL: bcp writes it as it writes ''
    (11, "\x00\x00", None, None, None, None, None, None, None),
    (9223372036854775807, "max bigint", "1", 1.0, 1, None, None, None, None),
    (-9223372036854775808, "min bigint", "-1", -1.0, 0, None, None, None, None),
]


COLUMNS = ["id", "txt", "amount", "ratio", "flag", "seen", "day", "blob", "small"]


def context(run_id: str, try_number: int = 1) -> dict:
    return {"ti": SimpleNamespace(run_id=run_id, try_number=try_number)}


FT, RT = fmt.DEFAULT_FIELD_TERMINATOR, fmt.DEFAULT_ROW_TERMINATOR


VALUES = [
    None,
    "",
    "plain",
    "\\",
    "\\N",
    "N",
    "a\x01b",
    "\x02\x03",
    "line\nfeed",
    "cr\rlf\r\n",
    "tab\t",
    "emoji 🎬 ü",
    "\x1f",
    "|~",
    "~",
    "ends with backslash\\",
    "\x00inside",
    "\x00",
    "\x00\x00",
]


def bcp_bytes(rows):
    def raw(v):
        return b"" if v is None else fmt.EMPTY + v.encode() if not v.strip("\x00") else v.encode()

    return b"".join(FT.encode().join(raw(v) for v in row) + RT.encode() for row in rows)


def csv_bytes(rows) -> bytes:
    """RFC 4180 with PostgreSQL's NULL convention: NULL unquoted and empty, every value quoted."""
    return "".join(
        ",".join("" if v is None else '"' + v.replace('"', '""') + '"' for v in row) + "\r\n" for row in rows
    ).encode()


def gzip_members(data: bytes) -> int:
    members = 0
    while data:
        member = zlib.decompressobj(31)
        member.decompress(data)
        data, members = member.unused_data, members + 1
    return members
