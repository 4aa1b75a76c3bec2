"""BcpExportOperator against the local stack's SQL Server stand-in, with the real freebcp and pymssql.

The stand-in is the project's TDS server executing on SQLite: the wire protocol,
login, result metadata, error numbers and both real clients are real; SQL
Server's own engine and T-SQL semantics are not (faults such as deadlocks are
injected through its ``flux_faults`` table)."""

from __future__ import annotations

import sqlite3
import threading
import time
from decimal import Decimal
from pathlib import Path

import psutil
import pytest

from flux_provider.errors import ErrorClass, FluxTerminalError, FluxTransientError
from flux_provider.formats import export_file as fmt
from flux_provider.operators.bcp_export import BcpExportOperator
from tests.support.stack import export, inject_fault, seed_table
from tests.support.values import COLUMNS, NASTY_ROWS, context

pytestmark = pytest.mark.stack  # the PostgreSQL/SQLite tests need no stack fixture, but services


def expected_value(column: str, value):
    if value is None:
        return None
    if column == "amount":
        return Decimal(value)
    if column == "flag":
        return bool(value)
    return value


def decoded(result: dict) -> list[tuple]:
    columns = [fmt.Column.from_json(c) for c in result["columns"]]
    return [
        tuple(fmt.parse(raw, col) for raw, col in zip(record, columns))
        for record in fmt.iter_records(Path(result["path"]), result["field_terminator"], result["row_terminator"])
    ]


def test_nasty_values_export_and_decode_back_exactly_with_freebcp(stack, tmp_path, unique):
    seed_table(stack, f"nasty_{unique}")
    result = export(
        tmp_path,
        unique,
        schema="dbo",
        table=f"nasty_{unique}",
        engine="bcp",
        count_sql=f"SELECT COUNT(*) FROM dbo.nasty_{unique}",
    )
    assert result["tool"] == "freebcp" and result["rows"] == len(NASTY_ROWS)
    assert result["bytes"] == Path(result["path"]).stat().st_size
    expected = [tuple(expected_value(c, v) for c, v in zip(COLUMNS, row)) for row in NASTY_ROWS]
    assert sorted(decoded(result), key=lambda r: r[0]) == sorted(expected, key=lambda r: r[0])
    types = {c["name"]: (c["system_type_name"], c["precision"], c["scale"]) for c in result["columns"]}
    assert types == {
        "id": ("bigint", 19, 0),
        "txt": ("nvarchar(400)", 0, 0),
        "amount": ("decimal(38,10)", 38, 10),
        "ratio": ("float", 53, 0),
        "flag": ("bit", 1, 0),
        "seen": ("datetime2(7)", 27, 7),
        "day": ("date", 10, 0),
        "blob": ("varbinary(300)", 0, 0),
        "small": ("int", 10, 0),
    }
    # NULL is an empty field; '' is one NUL byte (bcp's convention), for text and binary alike.
    raw = next(
        r
        for r in fmt.iter_records(Path(result["path"]), result["field_terminator"], result["row_terminator"])
        if r[0] == b"2"
    )
    assert raw[1] == b"\x00" and raw[7] == b"\x00"
    raw_null = next(
        r
        for r in fmt.iter_records(Path(result["path"]), result["field_terminator"], result["row_terminator"])
        if r[0] == b"1"
    )
    assert raw_null[1:] == [b""] * 8


def test_both_engines_write_byte_identical_files(stack, tmp_path, unique):
    seed_table(stack, f"same_{unique}")
    query = f"SELECT * FROM dbo.same_{unique} WHERE id <> 1"
    by_bcp = export(tmp_path / "bcp", unique, sql=query, engine="bcp")
    by_dbapi = export(tmp_path / "dbapi", unique, sql=query, engine="dbapi")
    assert (by_bcp["tool"], by_dbapi["tool"]) == ("freebcp", "dbapi")
    assert by_bcp["rows"] == by_dbapi["rows"] == len(NASTY_ROWS) - 1
    assert Path(by_bcp["path"]).read_bytes() == Path(by_dbapi["path"]).read_bytes()
    assert by_bcp["columns"] == by_dbapi["columns"]


@pytest.mark.parametrize("engine", ["bcp", "dbapi"])
def test_missing_table_is_terminal_and_names_the_table(stack, tmp_path, unique, engine):
    with pytest.raises(FluxTerminalError) as failure:
        export(tmp_path, unique, sql=f"SELECT * FROM dbo.no_such_{unique}", engine=engine)
    assert failure.value.error_class is ErrorClass.MISSING_OBJECT
    assert f"no_such_{unique}" in str(failure.value) and "data set 'nasty'" in str(failure.value)
    assert not list(tmp_path.rglob("*.bcp*"))


def test_bad_password_is_a_login_error(stack, tmp_path, unique, monkeypatch):
    conn = stack.context().connections["mssql_default"] | {"password": "wrong"}
    monkeypatch.setenv("AIRFLOW_CONN_MSSQL_WRONG", __import__("json").dumps(conn))
    with pytest.raises(FluxTerminalError) as failure:
        export(tmp_path, unique, schema="dbo", table="titles", engine="bcp", mssql_conn_id="mssql_wrong")
    assert failure.value.error_class is ErrorClass.LOGIN and failure.value.server_number == 18456


def test_server_down_is_a_retryable_connection_error(stack, tmp_path, unique, monkeypatch):
    from flux_devstack.ports import allocate

    conn = stack.context().connections["mssql_default"] | {"port": allocate(set())}
    monkeypatch.setenv("AIRFLOW_CONN_MSSQL_DOWN", __import__("json").dumps(conn))
    op = BcpExportOperator(
        task_id="export",
        dataset="nasty",
        staging_dir=str(tmp_path),
        schema="dbo",
        table="titles",
        engine="bcp",
        mssql_conn_id="mssql_down",
    )
    # Describing the query needs the server too: it fails first, with the same class.
    with pytest.raises(FluxTransientError) as failure:
        op.execute(context(f"run_{unique}"))
    assert failure.value.error_class is ErrorClass.CONNECTION and not failure.value.terminal
    # The bcp process itself, on the dead port, classifies the same way.
    from flux_provider.hooks.bcp import BcpHook

    with pytest.raises(FluxTransientError) as bcp_failure:
        BcpHook("mssql_down").export("SELECT 1", str(tmp_path / "x.dat"), field_terminator="|~", row_terminator="~|\n")
    assert bcp_failure.value.error_class is ErrorClass.CONNECTION and bcp_failure.value.exit_code == 1


@pytest.mark.parametrize("engine", ["bcp", "dbapi"])
def test_a_value_containing_the_terminator_fails_clearly_and_publishes_nothing(stack, tmp_path, unique, engine):
    rows = [
        (1, "fine", None, None, None, None, None, None, None),
        (2, "evil \x1f|~ inside", None, None, None, None, None, None, None),
    ]
    seed_table(stack, f"evil_{unique}", rows=rows)
    with pytest.raises(FluxTerminalError) as failure:
        export(tmp_path, unique, schema="dbo", table=f"evil_{unique}", engine=engine)
    assert failure.value.error_class is ErrorClass.DATA
    assert "terminator" in str(failure.value)
    assert not list(tmp_path.rglob("*.bcp*"))


def test_count_mismatch_fails_and_publishes_nothing(stack, tmp_path, unique):
    seed_table(stack, f"count_{unique}")
    with pytest.raises(FluxTerminalError, match="count query returned 99"):
        export(tmp_path, unique, schema="dbo", table=f"count_{unique}", engine="bcp", count_sql="SELECT 99")
    assert not list(tmp_path.rglob("*.bcp*"))


def test_failure_in_the_middle_of_an_export_leaves_no_file(stack, tmp_path, unique):
    many = [(i, f"row {i}", str(i), float(i), i % 2, None, None, None, i) for i in range(5000)]
    seed_table(stack, f"mid_{unique}", rows=many)
    inject_fault(stack, f"mid_{unique}", error_number=1205, remaining=2, after_rows=2500)
    for engine in ("bcp", "dbapi"):
        with pytest.raises(FluxTransientError) as failure:
            export(tmp_path, unique, schema="dbo", table=f"mid_{unique}", engine=engine)
        assert failure.value.error_class is ErrorClass.DEADLOCK
        assert not list(tmp_path.rglob("*.bcp*"))
    # The fault is used up: the next try exports everything.
    assert export(tmp_path, unique, schema="dbo", table=f"mid_{unique}", engine="bcp")["rows"] == 5000


def _freebcp_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name().startswith("freebcp"):
                found.append(child)
        except psutil.Error:  # it ended between the listing and the look
            continue
    return found


def test_hung_export_is_killed_by_execution_timeout_with_no_process_or_file_left(stack, tmp_path, unique, caplog):
    """Airflow enforces execution_timeout with its own ``timeout`` (SIGALRM -> AirflowTaskTimeout);
    the same mechanism runs here around execute()."""
    from airflow.sdk.exceptions import AirflowTaskTimeout
    from airflow.sdk.execution_time.timeout import timeout

    seed_table(stack, f"hang_{unique}")
    inject_fault(stack, f"hang_{unique}", delay_seconds=120, remaining=-1)
    password = stack.context().connections["mssql_default"]["password"]
    seen_cmdlines: list[list[str]] = []
    done = threading.Event()

    def watch():  # until the export has ended: a freebcp that exits between two looks is not an error here
        while not done.is_set() and not seen_cmdlines:
            for child in _freebcp_children():
                try:
                    seen_cmdlines.append(child.cmdline())
                except psutil.Error:
                    continue
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        with pytest.raises(AirflowTaskTimeout):
            with timeout(6):
                export(tmp_path, unique, schema="dbo", table=f"hang_{unique}", engine="bcp")
    finally:
        done.set()
        watcher.join()
    assert time.monotonic() - started < 30
    assert seen_cmdlines, "freebcp was never seen running"
    # The password is in neither the child's argv (/proc/<pid>/cmdline) nor any log line.
    assert all(password not in " ".join(cmd) for cmd in seen_cmdlines)
    assert "-P" in seen_cmdlines[0] and seen_cmdlines[0][seen_cmdlines[0].index("-P") + 1] == "-"
    assert password not in caplog.text
    assert _freebcp_children() == []
    assert not list(tmp_path.rglob("*.bcp*"))


def test_identifiers_are_validated_before_any_sql(stack, tmp_path, unique):
    with pytest.raises(FluxTerminalError) as failure:
        export(tmp_path, unique, schema="dbo", table="titles; DROP TABLE titles", engine="bcp")
    assert failure.value.error_class is ErrorClass.CONFIG and "not a valid SQL Server identifier" in str(failure.value)


def test_the_operator_runs_in_a_real_scheduler_run(airflow_client):
    result = airflow_client.run_dag("flux_export_example", timeout=300)
    assert result.state == "success", result.task_states
    xcom = airflow_client.xcom("flux_export_example", result.run_id, "export_titles")
    assert xcom["rows"] == 4 and xcom["tool"] == "freebcp"
    records = list(fmt.iter_records(Path(xcom["path"]), xcom["field_terminator"], xcom["row_terminator"]))
    assert [r[0] for r in records] == [b"1", b"2", b"3", b"4"]
    assert records[1][1] == "Café Society 🎬".encode()


def test_bad_password_fails_fast_with_exactly_one_try_in_airflow(stack, airflow_client):
    conn = stack.context().connections["mssql_default"]
    airflow_client.request("DELETE", "/connections/flux_test_bad_password") if any(
        c["connection_id"] == "flux_test_bad_password"
        for c in airflow_client.request("GET", "/connections", params={"limit": 1000}).json()["connections"]
    ) else None
    airflow_client.request(
        "POST",
        "/connections",
        json={
            "connection_id": "flux_test_bad_password",
            "conn_type": "mssql",
            "host": conn["host"],
            "port": conn["port"],
            "schema": conn["schema"],
            "login": conn["login"],
            "password": "wrong-password",
        },
    )
    result = airflow_client.run_dag("flux_test_export_bad_login", timeout=300)
    assert result.state == "failed"
    ti = airflow_client.request(
        "GET", f"/dags/flux_test_export_bad_login/dagRuns/{result.run_id}/taskInstances/export"
    ).json()
    assert ti["state"] == "failed" and ti["try_number"] == 1  # retries=3 in the DAG, none used
    log = airflow_client.request(
        "GET", f"/dags/flux_test_export_bad_login/dagRuns/{result.run_id}/taskInstances/export/logs/1"
    ).text
    assert "[login]" in log and "18456" in log and "wrong-password" not in log


PG_ROWS = [
    (1, None, None, None, None),
    (2, "", Decimal("0.0000000000"), b"", True),
    (3, "tab\tnl\n🎬 \x01\x02", Decimal("-12345678901234567890.0123456789"), b"\x00\xff", False),
]


def _decode_all(result):
    return sorted(decoded(result), key=lambda r: r[0])


def test_dbapi_engine_exports_from_postgresql(tmp_path, unique, monkeypatch, postgres):
    """PostgreSQL (see the ``postgres`` fixture) through Airflow's PostgresHook, server-side cursor."""
    import psycopg2

    monkeypatch.setenv("AIRFLOW_CONN_FLUX_PG", "postgres://{user}@{host}:{port}/{dbname}".format(**postgres))
    with psycopg2.connect(**postgres) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE pg_{unique} (id BIGINT, txt TEXT, amount NUMERIC(30,10), raw BYTEA, flag BOOLEAN)")
        cur.executemany(f"INSERT INTO pg_{unique} VALUES (%s, %s, %s, %s, %s)", PG_ROWS)
    try:
        result = export(
            tmp_path,
            unique,
            schema="public",
            table=f"pg_{unique}",
            engine="dbapi",
            dbapi_conn_id="flux_pg",
            fetch_size=2,
        )
        assert result["rows"] == 3 and result["tool"] == "dbapi"
        assert [c["system_type_name"] for c in result["columns"]] == [
            "bigint",
            "nvarchar",
            "decimal(30,10)",
            "varbinary",
            "bit",
        ]
        assert _decode_all(result) == [
            (1, None, None, None, None),
            (2, "", Decimal("0E-10"), b"", True),
            (3, PG_ROWS[2][1], PG_ROWS[2][2], b"\x00\xff", False),
        ]
    finally:
        with psycopg2.connect(**postgres) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE pg_{unique}")


def test_dbapi_engine_exports_from_sqlite(tmp_path, unique, monkeypatch):
    db = tmp_path / "source.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE src (id INTEGER, txt TEXT, raw BLOB)")
        conn.executemany("INSERT INTO src VALUES (?, ?, ?)", [(1, "", b""), (2, None, b"\x01"), (3, "ü\n", None)])
    monkeypatch.setenv("AIRFLOW_CONN_FLUX_SQLITE", __import__("json").dumps({"conn_type": "sqlite", "host": str(db)}))
    result = export(
        tmp_path / "out", unique, sql="SELECT id, txt, raw FROM src", engine="dbapi", dbapi_conn_id="flux_sqlite"
    )
    records = list(fmt.iter_records(Path(result["path"]), result["field_terminator"], result["row_terminator"]))
    assert records == [[b"1", b"\x00", b"\x00"], [b"2", b"", b"01"], [b"3", "ü\n".encode(), b""]]


def test_on_kill_kills_the_bcp_process_group_and_removes_the_partial_file(stack, tmp_path, unique):
    seed_table(stack, f"kill_{unique}")
    inject_fault(stack, f"kill_{unique}", delay_seconds=120, remaining=-1)
    op = BcpExportOperator(
        task_id="export", dataset="nasty", staging_dir=str(tmp_path), schema="dbo", table=f"kill_{unique}", engine="bcp"
    )
    errors: list[BaseException] = []

    def run():
        try:
            op.execute(context(f"run_{unique}"))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 15
    while not _freebcp_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _freebcp_children(), "freebcp never started"
    op.on_kill()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert errors and isinstance(errors[0], FluxTransientError)
    assert _freebcp_children() == []
    assert not list(tmp_path.rglob("*.bcp*"))
