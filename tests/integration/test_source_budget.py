"""One SQL Server, two data sets: their pools share the source's budget, sized from the server's own state,
under the real scheduler, through a capacity drop and a rise.

``source_a`` and ``source_b`` (weight 2) each split 600 rows into 6 parts whose queries hold the server
6 s (an injected delay). The stand-in's server-wide capacity model (the ``*`` row; SQL Server's engine is
what it stands in for) starts at 4 queries with one other user holding a grant (room for 3 of ours), drops
to 2 (room 1) once a few parts were served, then rises to 7 (room 6). Above its capacity queries wait for a
memory grant and, three above it, become deadlock victims after half their work.

Checked from Airflow's, the controller's and the stand-in's own records: whenever the scheduler admitted a
task of either data set, the two together held no more than the source's budget then; the budget came
within one of the server's room within 3 controller periods of each change; the server never held more
than its capacity + 1 for two periods in a row; both Hive targets are exact; and the source page's figures
(victims, the seconds they wasted, the longest query) agree with the stand-in's counters.
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
from tests.support.stack import inject_fault, pools_sync, records, wait_until
from tests.support.throttle import PERIOD, events, stack_db

pytestmark = pytest.mark.stack

SOURCE, DATASETS = "shared_backend", ("source_a", "source_b")
ROWS, HOLD, OTHERS = 600, 6.0, 1


@pytest.fixture(scope="module")
def shared_server(stack):
    from flux_devstack.tds.seed import load_seed

    pools_sync(stack, REPO / "tests" / "dags", "--reset")
    db = Path(stack.env()["FLUX_MSSQL_DB"])
    for name in ("a", "b"):
        load_seed(
            db,
            f"DROP TABLE IF EXISTS dbo.shared_src_{name};\n"
            f"CREATE TABLE dbo.shared_src_{name} (id INT NOT NULL, txt NVARCHAR(40));",
        )
        with sqlite3.connect(db) as conn:
            conn.executemany(
                f"INSERT INTO shared_src_{name} VALUES (?, ?)", [(i, f"{name} row {i}") for i in range(1, ROWS + 1)]
            )
    inject_fault(stack, "shared_src", remaining=-1, delay_seconds=HOLD)
    capacity(db, 4)
    yield db
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM flux_faults WHERE pattern = 'shared_src'")
        conn.execute("DELETE FROM flux_capacity WHERE pattern = '*'")
    reopened(stack)


def reopened(stack, timeout: float = 6 * PERIOD) -> None:
    """Wait until every source's budget is open again (the server shows no capacity now), so the next tests
    find every pool at its own limit."""

    def budgets():
        with stack_db(stack).connect() as conn:
            return conn.execute(select(store.source.c.value, store.source.c.high)).all()

    wait_until(
        lambda: all(value >= high for value, high in budgets()),
        timeout,
        lambda: f"the sources' budgets open again: {budgets()}",
    )


def capacity(db: Path, value: int) -> float:
    """The server's capacity (its memory grants); returns when it changed."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess, error_number, "
            "load_seconds, victim_after, others) VALUES ('*', ?, 2.0, 3, 1205, 0, 0.5, ?)",
            (value, OTHERS),
        )
    return time.time()


def served(db: Path, since: float) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM flux_served WHERE pattern = '*' AND NOT victim AND started >= ?", (since,)
        ).fetchone()[0]


def wait_served(db: Path, since: float, n: int, timeout: float = 600) -> None:
    wait_until(lambda: served(db, since) >= n, timeout, f"{n} parts served")


def samples(stack, since: float) -> list[dict]:
    s = store.source_samples
    with stack_db(stack).connect() as conn:
        rows = conn.execute(select(s).where(s.c.source == SOURCE).order_by(s.c.id)).mappings().all()
    return [dict(r) for r in rows if r["at"].replace(tzinfo=dt.timezone.utc).timestamp() >= since]


def budget_at(history: list[dict], moment: dt.datetime, start: int) -> int:
    value = start
    for e in history:
        if e["at"].replace(tzinfo=dt.timezone.utc) <= moment and e["new"] is not None:
            value = e["new"]
    return value


def settled(rows: list[dict], changed: float, room: int) -> float | None:
    """Seconds from a capacity change to the first period whose budget is within one of the room."""
    for r in rows:
        at = r["at"].replace(tzinfo=dt.timezone.utc).timestamp()
        if at >= changed and r["capacity"] is not None and abs(r["budget"] - room) <= 1:
            return at - changed
    return None


def wait_settled(stack, changed: float, room: int) -> None:
    """Wait, bounded, until a controller period after `changed` recorded a budget within one of the room."""
    deadline = time.monotonic() + 3 * PERIOD + 60
    while settled(samples(stack, changed), changed, room) is None and time.monotonic() < deadline:
        time.sleep(1)


def held_spans(airflow_client, runs: dict[str, str]) -> list[tuple[dt.datetime, dt.datetime]]:
    """(queued, ended) of every ended task of the runs: the time each held a place in the source's budget."""
    spans = []
    for name, run_id in runs.items():
        tis = airflow_client.request(
            "GET", f"/dags/flux_{name}/dagRuns/{run_id}/taskInstances", params={"limit": 100}
        ).json()["task_instances"]
        spans += [
            (dt.datetime.fromisoformat(t["queued_when"]), dt.datetime.fromisoformat(t["end_date"]))
            for t in tis
            if t["queued_when"] and t["end_date"]
        ]
    return spans


def test_two_data_sets_share_one_servers_budget_through_a_drop_and_a_rise(stack, airflow_client, shared_server):
    db = shared_server
    began = time.time()
    runs = {name: airflow_client.trigger(f"flux_{name}") for name in DATASETS}
    wait_served(db, began, 4)  # the two plans' bounds queries and the first parts
    dropped = capacity(db, 2)  # room for 1 of ours
    wait_served(db, dropped, 2)
    wait_settled(stack, dropped, 2 - OTHERS)  # the drop lasts until a period has read it
    risen = capacity(db, 7)  # room for 6
    for name, run_id in runs.items():
        result = airflow_client.wait_for_run(f"flux_{name}", run_id, timeout=900)
        assert result.state == "success", (name, result.task_states)
    time.sleep(2 * PERIOD)  # the controller records the last tries and one more period
    rows = samples(stack, began)

    # settling: within one of the room within 3 periods of each change
    for changed, room in ((dropped, 2 - OTHERS), (risen, 7 - OTHERS)):
        took = settled(rows, changed, room)
        assert took is not None and took <= 3 * PERIOD + 2, (room, took, rows)
    # the server never above its capacity + 1 for two periods in a row
    over = [r["ours_granted"] + r["ours_waiting"] + OTHERS > r["capacity"] + 1 for r in rows if r["capacity"]]
    assert not any(a and b for a, b in zip(over, over[1:])), rows

    # admission: the two data sets together never held more than the budget at that moment
    history = events(stack, f"source:{SOURCE}")
    start = budget_at(history, dt.datetime.fromtimestamp(began, dt.timezone.utc), rows[0]["budget"])
    spans = held_spans(airflow_client, runs)
    for admitted, _ in spans:
        holding = sum(1 for q, e in spans if q <= admitted < e)
        allowed = max(
            budget_at(history, admitted, start), budget_at(history, admitted - dt.timedelta(seconds=1), start)
        )
        assert holding <= allowed, (admitted, holding, allowed)
    assert any(e["new"] is not None and e["new"] <= 2 for e in history), history  # it was cut to the room

    for name in DATASETS:
        assert sorted(records(f"SELECT id FROM flux_tests.{name}")) == [(i,) for i in range(1, ROWS + 1)]

    # the source page against the stand-in's own counters
    window = (time.time() - began) / 3600 + 0.01
    page = airflow_client.plugin("GET", f"/flux/api/sources/{SOURCE}", params={"hours": window}).json()
    with sqlite3.connect(db) as conn:
        victims, wasted = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(failed - started), 0) FROM flux_victims "
            "WHERE pattern = '*' AND started >= ?",
            (began,),
        ).fetchone()
        longest = conn.execute(
            "SELECT MAX(ended - started) FROM flux_served WHERE pattern = '*' AND NOT victim AND started >= ?",
            (began,),
        ).fetchone()[0]
    assert sorted(d["dataset"] for d in page["datasets"]) == list(DATASETS)
    assert page["victims"] == victims, (page, victims)
    assert abs(page["wasted_seconds"] - wasted) <= 1.0 * victims + 1, (page["wasted_seconds"], wasted)
    # at least the server's longest; at most a whole try (the export times its query from its own side: on a
    # loaded host its login and the stand-in's start-up per connection come on top of the server's time)
    whole_try = max((ended - queued).total_seconds() for queued, ended in spans)
    assert longest - 0.5 <= page["longest_query"] <= whole_try, (page["longest_query"], longest, whole_try)
