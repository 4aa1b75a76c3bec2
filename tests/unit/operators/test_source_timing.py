"""An export try's latency signal: its time to the first row, measured on real freebcp against the SQL
Server stand-in (a server process of the test's own that holds each query 1.5 s before its first row, as
a loaded source does). Both export paths: a staging file, and the named pipe of streaming mode."""

from __future__ import annotations

import json
import os
import select
import threading

import pytest

from flux_provider.errors import FluxError
from flux_provider.operators.bcp_export import BcpExportOperator
from flux_provider.source_timing import FirstRow, SourceTiming
from tests.support.tds import PASSWORD, connect, tds_server

HOLD = 1.5


@pytest.fixture
def exporter(tmp_path, monkeypatch):
    seed = tmp_path / "seed.sql"
    seed.write_text("CREATE TABLE IF NOT EXISTS dbo.timed (id INT NOT NULL, txt NVARCHAR(20));")
    with tds_server(tmp_path, (seed,)) as (port, _):
        conn = connect(port, autocommit=True)
        cursor = conn.cursor()
        cursor.executemany("INSERT INTO dbo.timed VALUES (%d, %s)", [(i, f"row {i}") for i in range(500)])
        cursor.execute(f"INSERT INTO flux_faults (pattern, remaining, delay_seconds) VALUES ('timed', -1, {HOLD})")
        conn.close()
        monkeypatch.setenv(
            "AIRFLOW_CONN_TIMED",
            json.dumps(
                {
                    "conn_type": "mssql",
                    "host": "127.0.0.1",
                    "port": port,
                    "schema": "flux",
                    "login": "flux",
                    "password": PASSWORD,
                }
            ),
        )
        operator = BcpExportOperator(
            task_id="export", dataset="timed", schema="dbo", table="timed", mssql_conn_id="timed", engine="bcp"
        )
        operator.prepare()
        yield operator


def test_a_file_export_records_the_sources_time_to_its_first_row(exporter, tmp_path):
    rows, tool = exporter.run_engine(str(tmp_path / "out.bcp"))
    timing = exporter.source_timing
    assert (rows, tool) == (500, "freebcp") and timing.rows == 500
    assert HOLD <= timing.first_row <= timing.seconds  # the hold, not the whole export
    assert timing.rows_per_s == pytest.approx(500 / timing.seconds, rel=0.01)
    assert SourceTiming.from_json(timing.to_json()) == timing


def test_a_streamed_export_records_the_first_byte_on_the_pipe(exporter, tmp_path):
    pipe = tmp_path / "out.fifo"
    os.mkfifo(pipe)
    first_row, received = FirstRow(), []

    def read():
        with open(pipe, "rb") as stream:
            select.select([stream], [], [])
            first_row.seen()
            received.append(stream.read())

    reader = threading.Thread(target=read)
    reader.start()
    rows, _ = exporter.run_engine(str(pipe), first_row=first_row)
    reader.join(10)
    timing = exporter.source_timing
    assert rows == 500 and received[0].count(exporter.row_terminator.encode()) == 500
    assert HOLD <= timing.first_row <= timing.seconds


def test_a_failed_try_still_records_how_long_the_source_took(exporter, tmp_path):
    """A deadlock victim after the hold: no row, but the try's time at the source is recorded."""
    conn = connect(source_port(), autocommit=True)
    conn.cursor().execute("UPDATE flux_faults SET error_number = 1205 WHERE pattern = 'timed'")
    conn.close()
    with pytest.raises(FluxError, match="deadlock"):
        exporter.run_engine(str(tmp_path / "out.bcp"))
    timing = exporter.source_timing
    assert timing.first_row is None and timing.rows is None and timing.seconds >= HOLD


def source_port() -> int:
    """The port of the fixture's server (in the connection it set)."""
    return json.loads(os.environ["AIRFLOW_CONN_TIMED"])["port"]


def test_an_empty_result_has_no_first_row():
    """The pipe turns readable at its end too: a try that sent no row reports none."""
    timing = FirstRow().start(None)
    timing.seen()
    assert timing.stop(0).first_row is None and timing.stop(0).rows == 0


def test_a_count_query_chosen_as_deadlock_victim_is_a_deadlock_of_the_export(exporter):
    """pymssql raises the server's 1205 as OperationalError: classed by its number, so the data set's
    <match number="1205"/> rule and the throttle see a deadlock, not an unknown error."""
    conn = connect(source_port(), autocommit=True)
    conn.cursor().execute("UPDATE flux_faults SET error_number = 1205 WHERE pattern = 'timed'")
    conn.close()
    exporter.count_sql = "SELECT COUNT(*) FROM dbo.timed"
    with pytest.raises(FluxError) as raised:
        exporter.check_count(500)
    assert raised.value.error_class.value == "deadlock" and raised.value.server_number == 1205
    assert "the count query failed" in str(raised.value)
