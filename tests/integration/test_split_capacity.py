"""The adaptive pool on real load, end to end under the real scheduler: a data set split into 16 parts over a
source table of capacity 3 that drops to 1 and returns to 3 (the stand-in's capacity model, each query held
12 s), while another data set on a healthy table runs beside it.

What is checked, from Airflow's and the controller's own records: with AIMD, the pool comes down to the
capacity within 3 controller periods of the first overload, shrinks after the drop, never admits more task
instances than its slots at that moment, every run loads every row exactly, and the healthy data set's pool
is never cut. Then the same drop under each limit, on the stand-in's load model (latency grows with the
table's use, victims do half their work first): the gradient limit follows it within 3 periods with fewer
deadlock victims than AIMD, counted by the stand-in itself.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from flux_provider.throttle import store
from tests.support import REPO
from tests.support.stack import inject_fault, pools_sync, records
from tests.support.throttle import PERIOD, concurrency_ok, events, slots, stack_db

pytestmark = pytest.mark.stack

DATASET, DAG_ID, HEALTHY = "split_capacity", "flux_split_capacity", "split_keys"
ROWS = 1600
QUERY_SECONDS = 12


def set_capacity(stack, capacity: int) -> None:
    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess, error_number) "
            "VALUES ('cap_src', ?, 1.0, 2, 1205)",
            (capacity,),
        )


@pytest.fixture(scope="module")
def source(stack):
    from flux_devstack.tds.seed import load_seed

    pools_sync(stack, REPO / "tests" / "dags", "--reset")  # the test data sets' pools as their specs say now
    db = Path(stack.env()["FLUX_MSSQL_DB"])
    load_seed(db, "DROP TABLE IF EXISTS dbo.cap_src;\nCREATE TABLE dbo.cap_src (id INT NOT NULL, txt NVARCHAR(40));")
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO cap_src VALUES (?, ?)", [(i, f"row {i}") for i in range(1, ROWS + 1)])
        # the healthy data set's table (test_splits.py fills it with more), no capacity limit on it
        conn.execute("CREATE TABLE IF NOT EXISTS split_src (k BIGINT, at DATETIME2(3) NOT NULL, txt NVARCHAR(200))")
        if not conn.execute("SELECT COUNT(*) FROM split_src").fetchone()[0]:
            conn.executemany(
                "INSERT INTO split_src VALUES (?, '2026-03-01 00:00:00.000', 'x')", [(i,) for i in range(1, 101)]
            )
        conn.execute("DELETE FROM flux_faults WHERE pattern = 'cap_src'")
    inject_fault(stack, "cap_src", remaining=-1, delay_seconds=QUERY_SECONDS)  # each query holds the table
    yield
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM flux_faults WHERE pattern = 'cap_src'")
        conn.execute("DELETE FROM flux_capacity WHERE pattern = 'cap_src'")


def first_overload(stack, since: dt.datetime) -> dt.datetime | None:
    with stack_db(stack).connect() as conn:
        ends = [
            r.end_date.replace(tzinfo=dt.timezone.utc)
            for r in conn.execute(
                select(store.outcomes.c.end_date).where(
                    store.outcomes.c.dataset == DATASET,
                    store.outcomes.c.error_class == "deadlock",
                )
            )
        ]
    ends = [e for e in ends if e >= since]
    return min(ends) if ends else None


def history(stack, since: dt.datetime) -> list[tuple[dt.datetime, int]]:
    """The pool's slots as the controller set them since ``since``: (when, new slots)."""
    return [
        (e["at"].replace(tzinfo=dt.timezone.utc), e["new"])
        for e in events(stack, DATASET)
        if e["new"] is not None and e["at"].replace(tzinfo=dt.timezone.utc) >= since
    ]


def mean_in_effect(changes, start: dt.datetime, end: dt.datetime, before: int) -> float:
    """The slots' time-weighted mean between ``start`` and ``end`` (``before``: the value before any change)."""
    current, moment, total = before, start, 0.0
    for at, new in changes:
        if at <= start:
            current = new
        elif at < end:
            total += current * (at - moment).total_seconds()
            current, moment = new, at
    total += current * (end - moment).total_seconds()
    return total / (end - start).total_seconds()


def first_cut(changes, after: dt.datetime, to: int) -> dt.datetime | None:
    return next((at for at, new in changes if at >= after and new <= to), None)


def run(airflow_client) -> str:
    result = airflow_client.run_dag(DAG_ID, timeout=900)
    assert result.state == "success", result.task_states  # the retries carry every part through
    return result.run_id


def test_the_pool_finds_the_sources_capacity_follows_it_down_and_grows_back(stack, airflow_client, source):
    """In the stand-in's model a table of capacity K runs K queries at full speed, K+1 a little slower, and
    fails from K+2 on: the largest load without failures is K+1 tasks, where the pool should settle (and
    probe one above now and then)."""
    began = dt.datetime.now(dt.timezone.utc)
    assert slots(airflow_client, DATASET) == 8
    healthy_before = slots(airflow_client, HEALTHY)
    runs = []

    # capacity 3: 8 slots overload it; the pool comes down within 3 controller periods and stays there
    set_capacity(stack, 3)
    airflow_client.wait_for_dag(f"flux_{HEALTHY}")
    healthy_run = airflow_client.trigger(f"flux_{HEALTHY}")  # the healthy data set, at the same time
    runs.append(run(airflow_client))
    assert airflow_client.wait_for_run(f"flux_{HEALTHY}", healthy_run).state == "success"
    dropped = dt.datetime.now(dt.timezone.utc)
    overloaded = first_overload(stack, began)
    assert overloaded is not None, "8 parts at once on a table of capacity 3 must overload it"
    changes = history(stack, began)
    cut = first_cut(changes, overloaded, 4)
    assert cut is not None and (cut - overloaded).total_seconds() <= 3 * PERIOD + 5, changes
    settled = mean_in_effect(changes, cut, dropped, 8)
    assert 3 <= settled < 5, (settled, changes)  # at K+1 (4), probing K+2 now and then

    # the capacity drops to 1: the pool follows it down
    set_capacity(stack, 1)
    runs.append(run(airflow_client))
    restored = dt.datetime.now(dt.timezone.utc)
    overloaded = first_overload(stack, dropped)
    assert overloaded is not None
    changes = history(stack, began)
    cut = first_cut(changes, overloaded, 2)
    assert cut is not None and (cut - overloaded).total_seconds() <= 3 * PERIOD + 5, changes
    settled = mean_in_effect(changes, cut, restored, 8)
    assert 1 <= settled < 3, (settled, changes)

    # never more task instances at once than the slots in effect, across every run
    every_change = [e for e in events(stack, DATASET) if e["at"].replace(tzinfo=dt.timezone.utc) >= began]
    for run_id in runs:
        tis = airflow_client.request(
            "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100}
        ).json()["task_instances"]
        concurrency_ok([t for t in tis if t["task_id"] == "export_upload"], every_change, 8)
    assert sorted(records("SELECT id FROM flux_tests.split_capacity")) == [(i,) for i in range(1, ROWS + 1)]

    # the healthy data set was never cut
    cuts = [
        e
        for e in events(stack, HEALTHY)
        if e["at"].replace(tzinfo=dt.timezone.utc) >= began and e["new"] is not None and e["new"] < healthy_before
    ]
    assert not cuts and slots(airflow_client, HEALTHY) >= healthy_before


def throttle(stack, *args: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "AIRFLOW_HOME": stack.env()["AIRFLOW_HOME"]}
    done = subprocess.run([sys.executable, "-m", "flux_provider.throttle", *args], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr


def loaded_model(stack, capacity: int) -> None:
    """The stand-in's load model: up to 1.5 s more per query as the table's use grows, 4 s per query above the
    capacity, victims from two above after half their work."""
    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess, error_number, "
            "load_seconds, victim_after) VALUES ('cap_src', ?, 4.0, 2, 1205, 1.5, 0.5)",
            (capacity,),
        )


def drop_under(stack, airflow_client, algorithm: str) -> dict:
    """One run from 3 slots on a table of capacity 3 that drops to 1 once the first queries were served: the
    victims the stand-in recorded, and the seconds from the drop to the controller's first cut."""
    throttle(stack, "limit", DATASET, algorithm)
    throttle(stack, "unpin", DATASET)
    throttle(stack, "set", DATASET, "3")
    loaded_model(stack, 3)
    db = stack.env()["FLUX_MSSQL_DB"]
    began = dt.datetime.now(dt.timezone.utc)
    run_id = airflow_client.trigger(DAG_ID)
    served = 0
    while served < 4:  # the source served a few parts at its capacity: now it gets worse
        with sqlite3.connect(db) as conn:
            served = conn.execute(
                "SELECT COUNT(*) FROM flux_served WHERE pattern = 'cap_src' AND NOT victim AND started >= ?",
                (began.timestamp(),),
            ).fetchone()[0]
        time.sleep(1)
    loaded_model(stack, 1)
    dropped, before = dt.datetime.now(dt.timezone.utc), slots(airflow_client, DATASET)
    result = airflow_client.wait_for_run(DAG_ID, run_id, timeout=900)
    assert result.state == "success", result.task_states
    with sqlite3.connect(db) as conn:
        victims = conn.execute(
            "SELECT COUNT(*) FROM flux_victims WHERE pattern = 'cap_src' AND started >= ?", (began.timestamp(),)
        ).fetchone()[0]
    cut = first_cut(history(stack, dropped), dropped, before - 1)  # the first response to the drop
    tis = airflow_client.request("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).json()[
        "task_instances"
    ]
    concurrency_ok([t for t in tis if t["task_id"] == "export_upload"], events(stack, DATASET), 3)
    assert sorted(records("SELECT id FROM flux_tests.split_capacity")) == [(i,) for i in range(1, ROWS + 1)]
    return {"victims": victims, "cut_after": (cut - dropped).total_seconds() if cut else None}


def test_the_gradient_limit_follows_a_drop_with_fewer_victims_than_aimd(stack, airflow_client, source):
    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute("UPDATE flux_faults SET delay_seconds = 3 WHERE pattern = 'cap_src'")
    try:
        aimd = drop_under(stack, airflow_client, "aimd")
        gradient = drop_under(stack, airflow_client, "gradient")
    finally:
        throttle(stack, "limit", DATASET, "aimd")
        with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
            conn.execute("UPDATE flux_faults SET delay_seconds = ? WHERE pattern = 'cap_src'", (QUERY_SECONDS,))
    assert gradient["cut_after"] is not None and gradient["cut_after"] <= 3 * PERIOD + 5, (gradient, aimd)
    assert gradient["victims"] < aimd["victims"], (gradient, aimd)
