"""The SQL Server stand-in stores exactly what is loaded into it, by every loading path.

A real TDS server process (``python -m flux_devstack.tds``) with a seed
file, written to and read back through pymssql (a real driver). The stand-in
is not SQL Server: what is tested is that it keeps values, not T-SQL semantics."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.tds import connect, tds_server

DDL = (
    "CREATE TABLE dbo.hostile (id INT NOT NULL, s NVARCHAR(200) NULL, d DECIMAL(38,10) NULL, "
    "b VARBINARY(50) NULL, t DATETIME2(7) NULL, n BIGINT NULL)"
)


TEXTS = [
    None,
    "",
    "\x01\x02\x03\t",
    "cr\rcrlf\r\nlf\n",
    "back\\slash \\N \\",
    "\\N",
    "non-BMP \U0001f600 \U0001d11e",
    "nul\x00inside",
    "quote ' and \"",
    "é中",
]


DECIMALS = [
    None,
    Decimal("9999999999999999999999999999.9999999999"),
    Decimal("-9999999999999999999999999999.9999999999"),
    Decimal("0.0000000001"),
    Decimal("0E-10"),
]


BINARIES = [None, b"", b"\x00", b"\x00\x01\xff", bytes(range(50))]


TIMES = [None, "0001-01-01 00:00:00.0000000", "9999-12-31 23:59:59.9999999", "2026-11-27 12:34:56.1234567"]


BIGINTS = [None, -(2**63), 2**63 - 1, 0]


def rows() -> list[tuple]:
    width = max(map(len, (TEXTS, DECIMALS, BINARIES, TIMES, BIGINTS)))
    return [
        (
            i,
            TEXTS[i % len(TEXTS)],
            DECIMALS[i % len(DECIMALS)],
            BINARIES[i % len(BINARIES)],
            TIMES[i % len(TIMES)],
            BIGINTS[i % len(BIGINTS)],
        )
        for i in range(width * 2)
    ]


def literal(value) -> str:
    """A T-SQL literal as a user writes it in a seed file (strings keep their raw CR/LF)."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return "0x" + value.hex().upper()
    if isinstance(value, (int, Decimal)):
        return str(value)
    return "N'" + value.replace("'", "''") + "'"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("tds")
    seed_rows = rows()  # U+0000 included: a seed file may hold it inside a literal
    seed = home / "seed.sql"
    seed.write_bytes(
        (
            DDL.replace("hostile", "seeded")
            + ";\n"
            + "".join(f"INSERT INTO dbo.seeded VALUES ({', '.join(map(literal, r))});\r\n" for r in seed_rows)
        ).encode()
    )
    with tds_server(home, (seed,)) as (port, _):
        yield port, seed_rows


def read_back(port: int, table: str) -> list[tuple]:
    conn = connect(port)
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT id, s, d, b, CONVERT(VARCHAR(27), t, 121), n FROM dbo.{table} ORDER BY id")
        return [tuple(r) for r in cursor.fetchall()]
    finally:
        conn.close()


def test_a_seed_file_loads_exactly(server):
    """CR and CRLF inside string literals stay CR and CRLF; 0x... literals are those bytes; DECIMAL(38,10)
    and BIGINT extremes keep every digit; DATETIME2(7) keeps 7 digits."""
    port, seed_rows = server
    assert read_back(port, "seeded") == seed_rows


def test_bytes_that_pymssql_sends_as_text_are_refused_at_insert_as_sql_server_does(server):
    """pymssql writes bytes that decode as text (b'', b'\\N', b'abc') into the SQL as a string literal.
    SQL Server refuses a string into VARBINARY at INSERT (error 257, no implicit conversion); the stand-in
    refuses it too, instead of storing text that every later SELECT of the row would fail on."""
    import pymssql

    port, _ = server
    conn = connect(port, autocommit=True)
    try:
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE dbo.textual (id INT NOT NULL, b VARBINARY(20) NULL)")
        for value in (b"", b"\\N", b"abc"):
            with pytest.raises(pymssql.OperationalError) as refused:
                cursor.execute("INSERT INTO dbo.textual VALUES (%s, %s)", (1, value))
            assert refused.value.args[0] == 257 and b"Implicit conversion" in refused.value.args[1]
        cursor.execute("INSERT INTO dbo.textual VALUES (2, 0x), (3, %s), (4, NULL)", (b"\x00\\N",))
        cursor.execute("SELECT id, b FROM dbo.textual ORDER BY id")
        assert cursor.fetchall() == [(2, b""), (3, b"\x00\\N"), (4, None)]
    finally:
        conn.close()


def test_pymssql_parameters_load_exactly(server):
    """Through pymssql's parameters: DECIMAL(38,10) extremes (not through a float), VARBINARY with 0x00 and
    empty, NULL vs '', control characters, non-BMP text.

    Not U+0000 inside a string: pymssql puts parameters into the SQL text and FreeTDS's DB-Library
    (``dbcmd``) takes a C string, so the batch is cut at the NUL before it leaves the client, against any
    server. Load such values with a seed file (above) or ``sample_data``."""
    port, _ = server
    conn = connect(port, autocommit=True)
    try:
        cursor = conn.cursor()
        cursor.execute(DDL)
        # b"" goes out as the text '' (see the test below): load it as a literal, 0x
        expected = [r for r in rows() if "\x00" not in (r[1] or "") and r[3] != b""]
        for row in expected:
            cursor.execute("INSERT INTO dbo.hostile VALUES (%s, %s, %s, %s, %s, %s)", row)
    finally:
        conn.close()
    assert read_back(port, "hostile") == expected


def test_a_seed_of_thousands_of_inserts_loads_in_one_transaction_and_shows_its_progress(tmp_path, caplog):
    import logging
    import sqlite3

    from flux_devstack.tds.seed import load_seed

    db = tmp_path / "seed.db"
    sql = "CREATE TABLE dbo.many (id INT NOT NULL);\n" + "".join(
        f"INSERT INTO dbo.many VALUES ({i});\n" for i in range(7000)
    )
    with caplog.at_level(logging.INFO, logger="flux_devstack.tds"):
        assert load_seed(db, sql, name="many.sql", every=0) == 7001
    progress = [r.getMessage() for r in caplog.records]
    assert progress[0].startswith("many.sql: 1 of 7001 statements") and progress[-1].startswith(
        "many.sql: 7001 statements in"
    )
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM many").fetchone() == (7000,)
    with pytest.raises(sqlite3.OperationalError):  # a bad statement: nothing of the seed is kept
        load_seed(db, "INSERT INTO dbo.many VALUES (-1);\nINSERT INTO dbo.nowhere VALUES (1);")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM many WHERE id = -1").fetchone() == (0,)
