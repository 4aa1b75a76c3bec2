"""The throttle controller's period at fleet size, on PostgreSQL: N throttled data sets, a week of tries each.

A database of its own on the machine's PostgreSQL (``$FLUX_POSTGRES_URL``, default the machine's server) gets
Airflow's tables (``Base.metadata.create_all``: the schema ``airflow db migrate`` makes, without the history)
and the throttle's, then per data set: its pool and ``flux_throttle`` row, a week of finished tries (4 a day,
in ``task_instance`` and already recorded in ``flux_task_outcomes``) and, in the last period, 4 fresh tries
(one failed) that the period must record. Times, for each N, the first period after a start (it resumes
from what was recorded) and a steady one (nothing new).

    .venv/bin/python benchmarks/controller_bench.py [--sizes 50 200 300]

Rows are written with ``session_replication_role = replica`` (no foreign-key triggers: the tries have no DAG
runs or DAG versions behind them, which the controller never reads). Goal (issue 24): under 1 s a period
with 300 data sets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results"
SERVER = os.environ.get("FLUX_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DAYS, PER_DAY, FRESH = 7, 4, 4


def fresh_database(name: str) -> str:
    import psycopg2

    admin = psycopg2.connect(SERVER)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    parts = urlsplit(SERVER)
    return urlunsplit(("postgresql+psycopg2", parts.netloc, f"/{name}", "", ""))


def task_row(name: str, pool: str, run_id: str, n: int, state: str, start, end) -> dict:
    """One ended try of task ``n`` of the data set ``name``, as a ``task_instance`` row."""
    return dict(
        id=str(uuid.uuid4()),
        dag_id=f"flux_{name}",
        run_id=run_id,
        task_id=f"task_{n}",
        map_index=-1,
        try_number=1,
        state=state,
        start_date=start,
        end_date=end,
        pool=pool,
        pool_slots=1,
        queue="default",
        priority_weight=1,
        max_tries=0,
        hostname="bench",
        unixname="bench",
        operator="BcpToS3Operator",
        custom_operator_name="",
        executor_config=b"\x80\x04}\x94.",  # pickle of {}
        span_status="not_started",
        duration=30.0,
        task_display_name=f"task_{n}",
        retry_reason=None,
    )


def seed(engine, datasets: int, at: dt.datetime) -> None:
    from airflow.models import import_all_models
    from airflow.models.base import Base
    from sqlalchemy import text

    from flux_provider.throttle import migrations, store

    import_all_models()
    Base.metadata.create_all(engine)
    migrations.ensure_tables(engine)
    tis, outcomes, pools, throttles = [], [], [], []
    for d in range(datasets):
        name, pool = f"fleet_{d:03d}", f"flux_fleet_{d:03d}"
        pools.append({"pool": pool, "slots": 4, "description": name, "include_deferred": False})
        throttles.append(
            {"dataset": name, "pool": pool, "low": 1, "high": 8, "initial": 4, "pinned": None, "updated_at": at}
        )
        tries = [(day, n) for day in range(DAYS, 0, -1) for n in range(PER_DAY)] + [(0, n) for n in range(FRESH)]
        for day, n in tries:
            end = at - dt.timedelta(days=day, seconds=20 + n) if day else at - dt.timedelta(seconds=5 + n)
            start = end - dt.timedelta(seconds=30)
            state = "failed" if day == 0 and n == 0 else "success"
            run_id = f"scheduled__{(at - dt.timedelta(days=day)).date()}"
            row = task_row(name, pool, run_id, n, state, start, end)
            tis.append(row)
            if day:
                outcomes.append(
                    dict(
                        dag_id=row["dag_id"],
                        run_id=run_id,
                        task_id=row["task_id"],
                        map_index=-1,
                        try_number=1,
                        dataset=name,
                        state="success",
                        start_date=start,
                        end_date=end,
                        seconds=30.0,
                        inflight=1,
                    )
                )
    from airflow.models.pool import Pool
    from airflow.models.taskinstance import TaskInstance

    with engine.begin() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        ti_columns = {c.name for c in TaskInstance.__table__.columns}
        conn.execute(TaskInstance.__table__.insert(), [{k: v for k, v in r.items() if k in ti_columns} for r in tis])
        conn.execute(Pool.__table__.insert(), pools)
        conn.execute(store.throttle.insert(), throttles)
        conn.execute(store.outcomes.insert(), outcomes)


def measure(datasets: int) -> dict:
    from sqlalchemy import create_engine, func, select
    from sqlalchemy.orm import Session

    from flux_provider.throttle import store
    from flux_provider.throttle.controller import Controller

    url = fresh_database(f"flux_bench_controller_{datasets}")
    engine = create_engine(url)
    at = store.now()
    seed(engine, datasets, at)
    controller = Controller(period=60.0, holder="bench")
    timings = {}
    for label, moment in (("first", at), ("steady", at + dt.timedelta(seconds=60))):
        with Session(engine) as session:
            started = time.perf_counter()
            controller.tick(session, at=moment)
            session.commit()
            timings[label] = time.perf_counter() - started
    with Session(engine) as session:
        recorded = session.execute(select(func.count()).select_from(store.outcomes)).scalar()
    engine.dispose()
    expected = datasets * (DAYS * PER_DAY + FRESH)
    assert recorded == expected, f"{recorded} outcomes recorded, expected {expected}"
    return {"datasets": datasets, "first_s": timings["first"], "steady_s": timings["steady"], "outcomes": recorded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 300])
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", str(RESULTS / ".airflow-home"))
    rows = [measure(n) for n in args.sizes]
    print(f"{'data sets':>10} {'first period s':>15} {'steady period s':>16} {'outcomes':>9}")
    for r in rows:
        print(f"{r['datasets']:>10} {r['first_s']:>15.3f} {r['steady_s']:>16.3f} {r['outcomes']:>9}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "controller_bench.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
