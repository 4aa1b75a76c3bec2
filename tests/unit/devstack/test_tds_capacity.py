"""The SQL Server stand-in as a loaded server: one process per connection, and a capacity per table above
which queries slow down, then fail with 1205, changeable while it runs (``flux_capacity``). A server process
of the test's own, driven over pymssql; the model is the stand-in's, not SQL Server's engine."""

from __future__ import annotations

import threading
import time

import psutil
import pymssql
import pytest

from tests.support.tds import connect, tds_server


@pytest.fixture
def server(tmp_path):
    seed = tmp_path / "seed.sql"
    seed.write_text("CREATE TABLE IF NOT EXISTS dbo.cap_src (id INT NOT NULL); INSERT INTO dbo.cap_src VALUES (1);")
    with tds_server(tmp_path, (seed,)) as (port, proc):
        yield port, proc


def run(port: int, sql: str) -> list[tuple]:
    conn = connect(port, autocommit=True)
    try:
        cursor = conn.cursor()
        cursor.execute(sql)
        return cursor.fetchall() if cursor.description else []
    finally:
        conn.close()


def concurrently(port: int, sql: str, n: int, stagger: float = 0.5) -> list:
    """``n`` connections send ``sql``, each ``stagger`` s after the previous; results or exceptions in order."""
    results: list = [None] * n

    def one(i):
        try:
            results[i] = run(port, sql)
        except pymssql.Error as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
        time.sleep(stagger)
    for thread in threads:
        thread.join(60)
    return results


def test_each_connection_is_served_by_a_process_of_its_own(server):
    port, proc = server
    connections = [connect(port) for _ in range(3)]
    try:
        spids = set()
        for conn in connections:
            cursor = conn.cursor()
            cursor.execute("SELECT @@SPID")
            spids.add(cursor.fetchone()[0])
        assert len(spids) == 3
        assert len(psutil.Process(proc.pid).children()) >= 3  # N clients can use N cores
    finally:
        for conn in connections:
            conn.close()


def test_above_capacity_a_query_fails_as_a_deadlock_victim_and_a_raised_capacity_admits_it(server):
    port, _ = server
    run(
        port, "INSERT INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess) VALUES ('cap_src', 1, 0, 1)"
    )
    run(port, "INSERT INTO flux_faults (pattern, remaining, delay_seconds) VALUES ('cap_src', -1, 2)")  # slow queries
    first, second = concurrently(port, "SELECT id FROM dbo.cap_src", 2)
    assert first == [(1,)]
    assert isinstance(second, pymssql.Error) and second.args[0] == 1205 and b"deadlock" in second.args[1]
    assert run(port, "SELECT COUNT(*) FROM flux_running") == [(0,)]  # every query left when it ended

    run(port, "UPDATE flux_capacity SET capacity = 2 WHERE pattern = 'cap_src'")  # changed while it runs
    assert concurrently(port, "SELECT id FROM dbo.cap_src", 2) == [[(1,)], [(1,)]]


def test_a_little_above_capacity_latency_grows_with_the_excess(server):
    port, _ = server
    run(
        port,
        "INSERT INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess) VALUES ('cap_src', 1, 1.5, 2)",
    )
    run(port, "INSERT INTO flux_faults (pattern, remaining, delay_seconds) VALUES ('cap_src', -1, 1)")
    started = time.monotonic()
    results = concurrently(port, "SELECT id FROM dbo.cap_src", 2, stagger=0.3)
    assert results == [[(1,)], [(1,)]]
    # the second waited 1.5 s (one above capacity) before its own 1 s: at least 0.3 + 1.5 + 1 in all
    assert time.monotonic() - started >= 2.8


def test_a_victim_does_part_of_its_work_before_it_fails_and_is_recorded(server):
    """As SQL Server's deadlock monitor: the victim held the table for half its 2 s before it failed."""
    port, _ = server
    run(
        port,
        "INSERT INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess, victim_after) "
        "VALUES ('cap_src', 1, 0, 1, 0.5)",
    )
    run(port, "INSERT INTO flux_faults (pattern, remaining, delay_seconds) VALUES ('cap_src', -1, 2)")
    first, second = concurrently(port, "SELECT id FROM dbo.cap_src", 2, stagger=0.3)
    assert first == [(1,)]
    assert isinstance(second, pymssql.Error) and second.args[0] == 1205
    [(held, running, capacity)] = run(port, "SELECT failed - started, running, capacity FROM flux_victims")
    assert 0.9 <= held < 2.0 and (running, capacity) == (2, 1)
    served = run(port, "SELECT victim, ended - started FROM flux_served ORDER BY started")
    assert [victim for victim, _ in served] == [0, 1] and served[0][1] >= 2.0  # the load the source carried


def test_latency_grows_with_the_load_below_the_capacity_too(server):
    port, _ = server
    run(
        port,
        "INSERT INTO flux_capacity (pattern, capacity, slowdown_seconds, load_seconds) VALUES ('cap_src', 2, 0, 2.4)",
    )
    run(port, "INSERT INTO flux_faults (pattern, remaining, delay_seconds) VALUES ('cap_src', -1, 1)")
    started = time.monotonic()
    assert concurrently(port, "SELECT id FROM dbo.cap_src", 2, stagger=0.3) == [[(1,)], [(1,)]]
    # the second waited 2.4 x 1/2 = 1.2 s for the one beside it (half the table's use), then its own 1 s
    assert time.monotonic() - started >= 0.3 + 1.2 + 1
    assert run(port, "SELECT COUNT(*) FROM flux_victims") == [(0,)]


def test_a_query_with_a_flux_alias_is_load_and_the_control_tables_are_not(server):
    """An export wrapped as ``... AS flux_export`` counts against the capacity; reading flux_served does not."""
    port, _ = server
    run(
        port, "INSERT INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess) VALUES ('cap_src', 1, 0, 1)"
    )
    run(port, "INSERT INTO flux_faults (pattern, remaining, delay_seconds) VALUES ('cap_src', -1, 2)")
    wrapped = "SELECT id FROM (SELECT id FROM dbo.cap_src) AS flux_export"
    first, second = concurrently(port, wrapped, 2)
    assert first == [(1,)] and isinstance(second, pymssql.Error) and second.args[0] == 1205
    assert run(port, "SELECT COUNT(*) FROM flux_served WHERE pattern = 'cap_src'") == [(2,)]
