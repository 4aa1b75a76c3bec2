"""The export file format helpers and the TDS stand-in's SQL translation (pure tier)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from flux_devstack.tds.protocol import SqlType, encoder, parse_declared_type
from flux_devstack.tds.server import Session, _convert_to_varchar, _split_statements, _strip_n_literals
from flux_provider.formats import export_file as fmt

FT, RT = fmt.DEFAULT_FIELD_TERMINATOR, fmt.DEFAULT_ROW_TERMINATOR


@pytest.mark.parametrize("block_size", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_scan_counts_terminators_across_block_boundaries(tmp_path, block_size):
    rows = [[b"1", b"a|~", b"\x1f"], [b"", b"\x00", b"~\x1e"], [b"3", b"x" * 50, b"z"]]
    path = tmp_path / "f.bcp"
    path.write_bytes(b"".join(FT.encode().join(r) + RT.encode() for r in rows))
    assert fmt.scan(path, FT, RT, block_size=block_size) == (3, 6)
    assert list(fmt.iter_records(path, FT, RT, block_size=block_size)) == rows


def test_a_truncated_file_is_reported(tmp_path):
    path = tmp_path / "f.bcp"
    path.write_bytes(b"1" + FT.encode() + b"a" + RT.encode() + b"2" + FT.encode() + b"b")
    with pytest.raises(ValueError, match="truncated"):
        list(fmt.iter_records(path, FT, RT))


def test_renderer_follows_bcp_conventions():
    dec = fmt.Column.from_system_type("d", "decimal(12,4)", precision=12, scale=4)
    text = fmt.Column.from_system_type("t", "nvarchar(10)")
    dt2 = fmt.Column.from_system_type("ts", "datetime2(7)", scale=7)
    assert fmt.renderer(text)(None) == b"" and fmt.renderer(text)("") == b"\x00"
    assert fmt.renderer(text)("\x00") == b"\x00\x00" and fmt.renderer(text)("\x00\x00") == b"\x00" * 3
    assert fmt.renderer(text)("\x00a") == b"\x00a"
    assert fmt.renderer(text)("ü🎬") == "ü🎬".encode()
    assert fmt.renderer(dec)(Decimal("1.5")) == b"1.5000"
    assert fmt.renderer(text)(0.1) == b"0.10000000000000001" and fmt.renderer(text)(-0.0) == b"0"
    assert fmt.renderer(text)(b"\x00\xff") == b"00ff" and fmt.renderer(text)(b"") == b"\x00"
    assert fmt.renderer(dt2)(dt.datetime(2024, 1, 2, 3, 4, 5, 123456)) == b"2024-01-02 03:04:05.1234560"


def test_parse_reads_strings_of_nuls_by_the_files_version():
    text = fmt.Column.from_system_type("t", "nvarchar(10)")
    assert [fmt.parse(raw, text) for raw in (b"\x00", b"\x00\x00", b"\x00" * 3)] == ["", "\x00", "\x00\x00"]
    assert fmt.parse(b"\x00\x00", text, fmt.FORMAT_V1) == "\x00\x00"


def test_the_bcp_query_adds_a_nul_to_strings_of_nuls(tmp_path):
    """bcp writes '' and a lone NUL alike (one NUL byte): its query appends one to strings made of NULs.
    The expression is T-SQL; the stand-in runs it on SQLite with the same functions (no SQL Server here)."""
    columns = [fmt.Column.from_system_type("id", "int"), fmt.Column.from_system_type("s", "nvarchar(9)")]
    columns.append(fmt.Column.from_system_type("v", "varchar(9)"))
    query = fmt.export_query(columns, table="[dbo].[x]", bcp=True)
    assert "CONCAT([s], NCHAR(0))" in query and "CONCAT([v], CHAR(0))" in query
    assert fmt.export_query(columns, table="[dbo].[x]") == "SELECT [id], [s], [v] FROM [dbo].[x]"
    session = Session(tmp_path / "x.db", "flux", 1)
    session.db.execute("CREATE TABLE x (id INT, s TEXT, v TEXT)")
    values = [None, "", "\x00", "\x00\x00", "\x00a", "a\x00", " "]
    session.db.executemany("INSERT INTO x VALUES (?, ?, ?)", [(i, v, v) for i, v in enumerate(values)])
    rows = session.db.execute(session.translate(query.replace("[dbo].[x]", "x"))).fetchall()
    expected = [None, "", "\x00\x00", "\x00" * 3, "\x00a", "a\x00", " "]
    assert rows == [(i, v, v) for i, v in enumerate(expected)]
    session.close()
    with pytest.raises(ValueError, match="remove the ORDER BY"):
        fmt.export_query(columns[:2], query="SELECT id, s FROM x ORDER BY id", bcp=True)


def test_export_query_renders_date_time_columns_losslessly():
    columns = [
        fmt.Column.from_system_type("id", "bigint"),
        fmt.Column.from_system_type("ts", "datetime2(7)", scale=7),
        fmt.Column.from_system_type("day", "date"),
        fmt.Column.from_system_type("t", "time(3)", scale=3),
    ]
    assert fmt.export_query(columns, table="[dbo].[x]") == (
        "SELECT [id], CONVERT(VARCHAR(27), [ts], 121) AS [ts], CONVERT(VARCHAR(10), [day], 23) AS [day], "
        "CONVERT(VARCHAR(12), [t]) AS [t] FROM [dbo].[x]"
    )
    assert fmt.export_query(columns[:1], query="SELECT id FROM x ORDER BY id") == "SELECT id FROM x ORDER BY id"
    with pytest.raises(ValueError, match="ORDER BY"):
        fmt.export_query(columns, query="SELECT * FROM x ORDER BY id")


def test_tds_translation_helpers():
    assert _split_statements("SET A ON;SELECT 'a;b''c' AS [x;]] y] -- c;omment\nFROM t; ;") == [
        "SET A ON",
        "SELECT 'a;b''c' AS [x;]] y] \nFROM t",
    ]
    assert (
        _strip_n_literals("SELECT N'it''s', name FROM t WHERE x = N'N''a'")
        == "SELECT 'it''s', name FROM t WHERE x = 'N''a'"
    )
    assert _convert_to_varchar("2024-02-29 23:59:59.12", 27, 121) == "2024-02-29 23:59:59.1200000"
    assert _convert_to_varchar("1-01-01 00:00:00", 10, 23) == "0001-01-01"
    assert _convert_to_varchar("12:30:00.5", 12, None) == "12:30:00.500"


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("TEXT DECIMAL(38,10)", SqlType("decimal", 17, 38, 10)),
        ("NVARCHAR(200)", SqlType("nvarchar", 400)),
        ("datetime2(3)", SqlType("datetime2", 8, 27, 3)),
        ("BIGINT", SqlType("bigint", 8, 19)),
        ("VARBINARY(MAX)", SqlType("varbinary", 8000)),
        ("", None),
    ],
)
def test_declared_types_map_to_sql_server_types(declared, expected):
    assert parse_declared_type(declared) == expected


def test_decimal_encoding_is_exact_and_overflow_is_refused():
    enc = encoder(SqlType("decimal", 17, 38, 10))
    value = "9999999999999999999999999999.9999999999"
    raw = enc(value)
    assert raw[0] == 17 and raw[1] == 1 and int.from_bytes(raw[2:], "little") == 10**38 - 1
    with pytest.raises(OverflowError):
        enc("99999999999999999999999999999.0")


@pytest.mark.parametrize(
    ("text", "unscaled"),
    [("12.5", 1250), ("-0.50", -50), ("7", 700), ("3.", 300), ("1.005", 101), ("-1.004", -100), ("1e2", 10000)],
)
def test_decimal_text_encodes_to_the_same_unscaled_value_as_decimal_arithmetic(text, unscaled):
    """The plain-text fast path and the Decimal path (more digits than the scale: rounded) agree."""
    raw = encoder(SqlType("decimal", 17, 12, 2))(text)
    assert raw[0] == 9 and raw[1] == (1 if unscaled >= 0 else 0)
    assert int.from_bytes(raw[2:], "little") == abs(unscaled)


@pytest.mark.parametrize(
    ("text", "days", "ticks"),
    [
        ("2026-01-02 03:04:05.123", 739617, ((3 * 60 + 4) * 60 + 5) * 10_000_000 + 1_230_000),
        ("2026-01-02T03:04:05.123456", 739617, ((3 * 60 + 4) * 60 + 5) * 10_000_000 + 1_234_560),
        ("2026-01-02 03:04:05.1234567", 739617, ((3 * 60 + 4) * 60 + 5) * 10_000_000 + 1_234_567),
        ("2026-01-02", 739617, 0),
    ],
)
def test_datetime2_text_keeps_every_digit_up_to_100_ns(text, days, ticks):
    raw = encoder(SqlType("datetime2", 8, 27, 7))(text)
    assert raw[0] == 8
    assert int.from_bytes(raw[1:6], "little") == ticks and int.from_bytes(raw[6:9], "little") == days
