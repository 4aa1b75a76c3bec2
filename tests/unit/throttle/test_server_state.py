"""A source's own state, read as the controller reads it (``read_server_state``, pymssql, an Airflow
connection) from the SQL Server stand-in's views (a server process of the test's own). The stand-in's
capacity model stands in for SQL Server's engine: the first ``capacity`` queries by arrival hold a memory
grant, the rest wait on RESOURCE_SEMAPHORE, and its other users (login ``reporting``) hold theirs first."""

from __future__ import annotations

import json
import threading
import time

import pymssql
import pytest

from flux_provider.hooks.mssql_state import ServerState, StateDenied, read_server_state
from tests.support.tds import PASSWORD, connect, tds_server

HOLD = 3.0


@pytest.fixture
def server(tmp_path, monkeypatch):
    seed = tmp_path / "seed.sql"
    seed.write_text("CREATE TABLE IF NOT EXISTS dbo.held (id INT NOT NULL); INSERT INTO dbo.held VALUES (1);")
    with tds_server(tmp_path, (seed,)) as (port, _):
        monkeypatch.setenv(
            "AIRFLOW_CONN_SOURCE_STATE",
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
        yield port


def run(port: int, sql: str) -> None:
    conn = connect(port, autocommit=True)
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def hold_queries(port: int, n: int) -> list[threading.Thread]:
    """``n`` queries of ours that each hold the server ``HOLD`` seconds (an injected delay)."""
    run(port, f"INSERT INTO flux_faults (pattern, remaining, delay_seconds) VALUES ('held', -1, {HOLD})")
    threads = [threading.Thread(target=run, args=(port, "SELECT id FROM dbo.held")) for _ in range(n)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    time.sleep(0.5)
    return threads


def test_an_idle_server_without_a_capacity_row_says_nothing_to_size_by(server):
    state = read_server_state("source_state")
    assert state == ServerState(capacity=None)
    assert state.room() is None


def test_our_queries_above_the_capacity_wait_and_the_room_discounts_only_the_others(server):
    run(
        server,
        "INSERT INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess, others) "
        "VALUES ('*', 4, 0, 100, 1)",
    )
    threads = hold_queries(server, 5)
    try:
        state = read_server_state("source_state")
    finally:
        for thread in threads:
            thread.join(30)
    # 1 other user holds a grant first; 3 of our 5 hold one and 2 wait
    assert (state.capacity, state.others_granted, state.ours_granted, state.ours_waiting) == (4, 1, 3, 2)
    assert state.room() == 3  # what is ours to use: 4 less the other user, whatever we run
    assert 0.4 <= state.longest_query <= HOLD + 1 and state.longest_transaction == state.longest_query
    # when they are done the server is idle of ours: the other user's grant still sizes it
    after = read_server_state("source_state")
    assert (after.capacity, after.ours, after.room()) == (4, 0, 3)


def test_more_of_our_load_never_reads_as_more_room(server):
    run(
        server,
        "INSERT INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess, others) "
        "VALUES ('*', 3, 0, 100, 2)",
    )
    rooms = []
    for n in (1, 4):
        threads = hold_queries(server, n)
        try:
            rooms.append(read_server_state("source_state").room())
        finally:
            for thread in threads:
                thread.join(30)
    assert rooms == [1, 1]


def test_a_login_without_view_server_state_is_refused_with_sql_servers_error(server):
    run(server, "INSERT INTO flux_denied VALUES ('flux', 'VIEW SERVER STATE')")
    with pytest.raises(StateDenied, match="error 300"):
        read_server_state("source_state")
    with pytest.raises(pymssql.Error):  # the same as any client sees it
        run(server, "SELECT * FROM sys.dm_exec_requests")
