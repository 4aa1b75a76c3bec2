"""The adaptive pool on real load, end to end under the real scheduler: a data set split into 8 parts over a
source table of capacity 3 that drops to 1 once the first parts were served (the stand-in's load model:
each query holds the table 3 s, longer as its use grows and steeply above its capacity; a victim from two
above, after half its work), under AIMD and then under the gradient limit.

What is checked, from Airflow's, the controller's and the stand-in's own records: both limits cut the pool
after the drop, the gradient limit within 3 controller periods and with fewer deadlock victims than AIMD;
neither ever admits more task instances than its slots at that moment, and every run loads every row
exactly.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.stack import inject_fault, pools_sync, records
from tests.support.throttle import PERIOD, concurrency_ok, events

pytestmark = pytest.mark.stack

DATASET, DAG_ID = "split_capacity", "flux_split_capacity"
ROWS = 1600
QUERY_SECONDS = 3


@pytest.fixture(scope="module")
def source(stack):
    from flux_devstack.tds.seed import load_seed

    pools_sync(stack, REPO / "tests" / "dags", "--reset")  # the test data sets' pools as their specs say now
    db = Path(stack.env()["FLUX_MSSQL_DB"])
    load_seed(db, "DROP TABLE IF EXISTS dbo.cap_src;\nCREATE TABLE dbo.cap_src (id INT NOT NULL, txt NVARCHAR(40));")
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO cap_src VALUES (?, ?)", [(i, f"row {i}") for i in range(1, ROWS + 1)])
        conn.execute("DELETE FROM flux_faults WHERE pattern = 'cap_src'")
    inject_fault(stack, "cap_src", remaining=-1, delay_seconds=QUERY_SECONDS)  # each query holds the table
    yield
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM flux_faults WHERE pattern = 'cap_src'")
        conn.execute("DELETE FROM flux_capacity WHERE pattern = 'cap_src'")


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
    while served < 2:  # the source served a few parts at its capacity: now it gets worse
        with sqlite3.connect(db) as conn:
            served = conn.execute(
                "SELECT COUNT(*) FROM flux_served WHERE pattern = 'cap_src' AND NOT victim AND started >= ?",
                (began.timestamp(),),
            ).fetchone()[0]
        time.sleep(1)
    loaded_model(stack, 1)
    dropped = dt.datetime.now(dt.timezone.utc)
    result = airflow_client.wait_for_run(DAG_ID, run_id, timeout=900)
    assert result.state == "success", result.task_states
    with sqlite3.connect(db) as conn:
        victims = conn.execute(
            "SELECT COUNT(*) FROM flux_victims WHERE pattern = 'cap_src' AND started >= ?", (began.timestamp(),)
        ).fetchone()[0]
    cuts = [  # the controller's first response to the drop
        e["at"].replace(tzinfo=dt.timezone.utc)
        for e in events(stack, DATASET)
        if e["actor"] == "controller"
        and e["old"] is not None
        and e["new"] < e["old"]
        and e["at"].replace(tzinfo=dt.timezone.utc) >= dropped
    ]
    cut = min(cuts, default=None)
    tis = airflow_client.request("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).json()[
        "task_instances"
    ]
    concurrency_ok([t for t in tis if t["task_id"] == "export_upload"], events(stack, DATASET), 3)
    assert sorted(records("SELECT id FROM flux_tests.split_capacity")) == [(i,) for i in range(1, ROWS + 1)]
    return {"victims": victims, "cut_after": (cut - dropped).total_seconds() if cut else None}


def test_the_gradient_limit_follows_a_drop_with_fewer_victims_than_aimd(stack, airflow_client, source):
    aimd = drop_under(stack, airflow_client, "aimd")
    gradient = drop_under(stack, airflow_client, "gradient")
    assert aimd["cut_after"] is not None and aimd["victims"] > 0, aimd  # the drop overloads the source
    assert gradient["cut_after"] is not None and gradient["cut_after"] <= 3 * PERIOD + 5, (gradient, aimd)
    assert gradient["victims"] < aimd["victims"], (gradient, aimd)
