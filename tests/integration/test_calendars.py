"""Business calendars on the stack, with a short real window (no long sleeps): a data set whose source has a
maintenance window starting now. The controller holds its pool at 0 during the window and gives the slots back
after it, recording both; its timetable (registered by the plugin) puts the run due inside the window at the
window's end, and that is when the scheduler starts it; the dashboard's timeline shows the window."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from flux_devstack.tds.seed import load_seed
from tests.support import RUN_DIR
from tests.support.stack import pools_sync, wait_until
from tests.support.throttle import PERIOD, events, slots, stack_db

pytestmark = pytest.mark.stack

SPECS = RUN_DIR / "fleet" / "specs"  # the stack's bundle of generated data sets (flux-fleet)


def utc(value) -> dt.datetime:
    """A time read from the metadata DB (SQLite hands text or naive UTC back to a text query)."""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment


def spec(name: str, cron: str, day: str, start: str, end: str, *, partitioned: bool = False) -> str:
    """A data set with a window; ``partitioned``: it writes the run's day (its runs are day partitions)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<dataset name="{name}">
  <owner>flux-tests</owner>
  <source schema="dbo" table="calendar_src"/>
  <export engine="bcp" mode="streaming"/>
  <s3 location="s3://flux/tests/{name}"/>
  <hive database="flux_tests" targetTable="{name}" createDatabase="true">
    <column name="id" type="INT"/>{PARTITION if partitioned else ""}
    <transform>SELECT id FROM {{{{ staging }}}}</transform>
  </hive>
  <schedule><cron>{cron}</cron></schedule>
  <calendar timezone="UTC"><window date="{day}" start="{start}" end="{end}" reason="vendor patching"/></calendar>
  <throttle initial="3" min="1" max="4"/>
</dataset>
"""


PARTITION = '\n    <partition name="day" type="STRING" value="{{ flux_day }}"/>'


def first_run(db, dag_id: str, timeout: float = 120):
    """The DAG's first run, once the scheduler has queued it (it creates the moved run when the window ends)."""
    deadline = time.monotonic() + timeout
    while True:
        with db.connect() as conn:
            first = conn.execute(
                text(
                    "SELECT run_after, queued_at, logical_date, partition_key FROM dag_run WHERE dag_id = :d "
                    "ORDER BY id LIMIT 1"
                ),
                {"d": dag_id},
            ).first()
        if first is not None and first.queued_at is not None:
            return first
        assert time.monotonic() < deadline, f"the run of {dag_id} due in the window never started"
        time.sleep(2)


def write_window_specs(stack, name: str, begin: dt.datetime, end: dt.datetime) -> None:
    """Two data sets over a five-row source with a maintenance window from ``begin`` to ``end``: ``name``
    due every minute of it, and ``<name>_p`` day-partitioned, due once a day at its start; their pools synced."""
    source = Path(stack.env()["FLUX_MSSQL_DB"])
    load_seed(source, "DROP TABLE IF EXISTS dbo.calendar_src;\nCREATE TABLE dbo.calendar_src (id INT NOT NULL);")
    with sqlite3.connect(source) as conn:
        conn.executemany("INSERT INTO calendar_src VALUES (?)", [(i,) for i in range(5)])
    # due at each minute of the window but not at its end: without catchup, Airflow recomputes the next run from
    # the latest fire before now whenever it parses the file, and a fire at the window's end would stand for the
    # moved run if a parse came just after the end (both are one run at that moment; only its label differs)
    cron = ",".join(str((begin + dt.timedelta(minutes=m)).minute) for m in range(3)) + " * * * *"
    for old in SPECS.glob("cal_*.xml"):
        old.unlink()
    SPECS.mkdir(parents=True, exist_ok=True)
    window = (begin.date().isoformat(), f"{begin:%H:%M}", f"{end:%H:%M}")
    (SPECS / f"{name}.xml").write_text(spec(name, cron, *window))
    # the same window on a day-partitioned data set (PartitionCron, due once a day: at the window's start); its
    # run moves to the window's end and keeps its day's partition
    daily = f"{begin.minute} {begin.hour} * * *"
    (SPECS / f"{name}_p.xml").write_text(spec(f"{name}_p", daily, *window, partitioned=True))
    pools_sync(stack, SPECS.parent)


def test_a_maintenance_window_empties_the_pool_moves_the_run_and_gives_the_slots_back(stack, airflow_client, unique):
    db = stack_db(stack)
    name = f"cal_{unique[:6]}"
    now = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    begin, end = now, now + dt.timedelta(minutes=3)  # a window that has just begun
    write_window_specs(stack, name, begin, end)
    dag_id, partitioned = f"flux_{name}", f"flux_{name}_p"
    airflow_client.wait_for_dag(dag_id, timeout=120)
    airflow_client.wait_for_dag(partitioned, timeout=120)

    wait_until(lambda: slots(airflow_client, name) == 0, PERIOD * 4, lambda: events(stack, name))
    held = events(stack, name)[-1]
    assert (held["old"], held["new"], held["actor"]) == (3, 0, "controller")
    assert held["reason"] == f"maintenance window until {end:%Y-%m-%d %H:%M} UTC: vendor patching"

    with db.connect() as conn:  # the next run is due when the window ends, not at the next minute
        due = {
            d: conn.execute(text("SELECT next_dagrun_create_after FROM dag WHERE dag_id = :d"), {"d": d}).scalar()
            for d in (dag_id, partitioned)
        }
    assert {d: utc(v) for d, v in due.items()} == {dag_id: end, partitioned: end}, (due, end)
    timeline = airflow_client.plugin("GET", f"/flux/api/datasets/{name}/timeline", params={"hours": 1}).json()
    assert [(w["start"], w["end"], w["reason"]) for w in timeline["windows"]] == [
        (begin.timestamp(), end.timestamp(), "vendor patching")
    ]
    for d in (dag_id, partitioned):
        airflow_client.request("PATCH", f"/dags/{d}", json={"is_paused": False})
    try:
        left = (end - dt.datetime.now(dt.timezone.utc)).total_seconds()
        wait_until(lambda: slots(airflow_client, name) == 3, left + PERIOD * 6, lambda: events(stack, name), every=2)
        back = events(stack, name)[-1]
        assert (back["old"], back["new"], back["reason"]) == (0, 3, "maintenance window over: back to 3")
        assert utc(back["at"]) >= end
        first, first_partitioned = first_run(db, dag_id), first_run(db, partitioned)
    finally:
        for d in (dag_id, partitioned):
            airflow_client.request("PATCH", f"/dags/{d}", json={"is_paused": True})
    assert utc(first.run_after) == end and utc(first.queued_at) >= end
    assert begin <= utc(first.logical_date) < end  # the run keeps the time it was due at
    moved = first_partitioned
    assert utc(moved.run_after) == end and utc(moved.queued_at) >= end
    assert (moved.logical_date, moved.partition_key) == (None, begin.date().isoformat())  # the day it was due
    with db.connect() as conn:  # and the runs after it are due after the window, each at its own moment
        run_ids = [r[0] for r in conn.execute(text("SELECT run_id FROM dag_run WHERE dag_id = :d"), {"d": dag_id})]
    assert len(run_ids) == len(set(run_ids))
