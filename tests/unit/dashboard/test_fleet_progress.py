"""The night's progress on the dashboard: runs landed over time and what each unfinished run waits for, read
from Airflow's own tables (the ORM's schema, on SQLite) in bulk."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from flux_provider.dashboard import fleet
from flux_provider.throttle import store
from tests.unit.throttle.test_controller_sql import AT, data_set, tries


def runs(engine, *rows) -> None:
    from airflow.models.dagrun import DagRun

    with Session(engine) as session:
        for name, run_id, state, minutes_ago, ended in rows:
            run = DagRun(dag_id=f"flux_{name}", run_id=run_id, run_type="manual", conf={}, state=state)
            run.run_after = AT - dt.timedelta(minutes=minutes_ago)
            run.end_date = AT - dt.timedelta(minutes=ended) if ended is not None else None
            session.add(run)
        session.commit()


def test_the_night_counts_landed_runs_per_minute_and_says_what_each_open_run_waits_for(engine):
    for name, slots in (("a", 2), ("b", 2), ("c", 1), ("d", 2), ("e", 2)):
        data_set(engine, name, slots)
    runs(
        engine,
        ("a", "r1", "success", 30, 12),
        ("b", "r1", "success", 30, 12),
        ("b", "r0", "success", 30, 10),
        ("c", "r1", "running", 30, None),
        ("d", "r1", "running", 30, None),
        ("e", "r1", "queued", 30, None),
        ("a", "old", "success", 60 * 24, 60 * 23),  # outside the window
    )
    open_task = {"end_date": None, "start_date": None, "run_id": "r1"}
    tries(engine, "c", {**open_task, "task_id": "export_upload", "state": "scheduled", "priority_weight": 1000})
    tries(engine, "c", {**open_task, "task_id": "other", "state": "running", "run_id": "x"})  # fills c's pool
    tries(
        engine,
        "d",
        {**open_task, "task_id": "export_upload", "state": "success", "priority_weight": 1000},
        {**open_task, "task_id": "transform", "state": "scheduled", "priority_weight": 2000},
    )
    with engine.begin() as conn:
        conn.execute(
            store.host.insert().values(name="host", value=4, low=2, high=8, pinned=None, mode="adaptive", updated_at=AT)
        )
    with Session(engine) as session:
        shown = fleet.progress(session, hours=12, now=AT)
    assert (shown["runs"], shown["landed"], shown["running"], shown["queued"]) == (6, 3, 2, 1)
    assert [(b["landed"], b["total"]) for b in shown["landed_over_time"]] == [(2, 2), (0, 2), (1, 3)]
    assert {w["dataset"]: w["waits_for"] for w in shown["waiting"]} == {
        "c": "a slot of pool flux_c (1 of 1 in use): export_upload",
        "d": "a worker slot, the host limit (4 tasks at once): transform",
        "e": "its turn to start (the data set's max_active_runs)",
    }
    assert shown["waits_by_kind"] == {"pool": 1, "host": 1, "start": 1}
