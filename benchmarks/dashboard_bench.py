"""The dashboard's overview API at fleet size, on PostgreSQL: N data sets, a week of runs each.

A database of its own on the machine's PostgreSQL (as ``controller_bench.py``: ``$FLUX_POSTGRES_URL``) gets
Airflow's tables and the throttle's, then per data set: its DAG, pool and ``flux_throttle`` row, a week of
daily runs with their tries (``controller_bench.seed``), and each run's stage XComs as the flux steps write
them (an ``export_upload`` ``UploadResult``, a ``transform`` ``TransformResult`` with its statements). Times
the overview as the API computes it (``flux_provider.dashboard.overview.overview``), each query of it on its
own, over ``--repeat`` calls after one warm-up.

    .venv/bin/python benchmarks/dashboard_bench.py [--sizes 50 300] [--repeat 20]

Goal (issue 39): under 50 ms at 300 data sets with a week of history.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from controller_bench import DAYS, fresh_database, seed  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def stage_values(name: str, day: dt.date) -> dict[str, dict]:
    """What a run's stage tasks return, at the size the flux steps write them."""
    from flux_provider.columns import Column
    from flux_provider.handoffs import ExportResult, HiveColumn, TransformResult, UploadResult, WrittenPartition

    columns = [Column(f"c{i}", "nvarchar", "nvarchar(200)", max_length=400) for i in range(12)]
    export = ExportResult(dataset=name, path=None, rows=10_000, bytes=2_000_000, engine="bcp", columns=columns)
    prefix = f"media/{name}/runs/scheduled__{day}/"
    upload = UploadResult(
        dataset=name,
        bucket="flux",
        prefix=prefix,
        manifest=prefix + "_manifest.json",
        rows=10_000,
        chunks=3,
        bytes=900_000,
        raw_bytes=2_000_000,
        columns=columns,
        export=export,
    )
    statements = [
        {"statement": f"step {i}", "sql": "SELECT " + ", ".join(f"`c{j}`" for j in range(12)), "seconds": 0.4}
        for i in range(17)
    ]
    transform = TransformResult(
        dataset=name,
        run=f"scheduled__{day}",
        target=f"`media`.`{name}`",
        manifest_rows=10_000,
        staging_rows=10_000,
        target_rows=10_000,
        statements=statements,
        partitions=[WrittenPartition(name=f"day={day}", values={"day": str(day)}, rows=10_000)],
        columns=[HiveColumn(c.name, "STRING") for c in columns],
    )
    return {"export_upload": upload.to_json(), "transform": transform.to_json()}


def seed_runs(engine, datasets: int, at: dt.datetime) -> None:
    """Each data set's DAG, its week of daily runs and their stage XComs (no foreign-key triggers)."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from sqlalchemy import text

    dags, runs, xcoms = [], [], []
    for d in range(datasets):
        name = f"fleet_{d:03d}"
        dags.append(
            dict(
                dag_id=f"flux_{name}",
                bundle_name="dags-folder",
                is_stale=False,
                max_active_tasks=16,
                is_paused=False,
                max_consecutive_failed_dag_runs=0,
                has_task_concurrency_limits=False,
                owners="media",
                next_dagrun_create_after=at + dt.timedelta(hours=1),
            )
        )
        for day in range(DAYS, -1, -1):
            moment = at - dt.timedelta(days=day)
            run_id, run_pk = f"scheduled__{moment.date()}", len(runs) + 1
            runs.append(
                dict(
                    id=run_pk,
                    dag_id=f"flux_{name}",
                    run_id=run_id,
                    run_type="scheduled",
                    state="success",
                    run_after=moment,
                    start_date=moment,
                    end_date=moment + dt.timedelta(minutes=5),
                )
            )
            for task_id, value in stage_values(name, moment.date()).items():
                xcoms.append(
                    dict(
                        dag_run_id=run_pk,
                        task_id=task_id,
                        map_index=-1,
                        key="return_value",
                        dag_id=f"flux_{name}",
                        run_id=run_id,
                        value=value,
                        timestamp=moment,
                    )
                )
    with engine.begin() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        conn.execute(DagModel.__table__.insert(), dags)
        conn.execute(DagRun.__table__.insert(), runs)
        conn.execute(XComModel.__table__.insert(), xcoms)


def measure(datasets: int, repeat: int) -> dict:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from flux_provider.dashboard import overview
    from flux_provider.throttle import store

    engine = create_engine(fresh_database(f"flux_bench_dashboard_{datasets}"))
    at = store.now()
    seed(engine, datasets, at)
    seed_runs(engine, datasets, at)
    times = []
    with Session(engine) as session:
        shown = overview.overview(session, limit=1000)  # warm-up, and the answer checked below
        for _ in range(repeat):
            started = time.perf_counter()
            overview.overview(session, limit=1000)
            times.append(time.perf_counter() - started)
    engine.dispose()
    assert shown["total"] == datasets and all(r["rows"] == 10_000 for r in shown["items"]), shown["items"][:1]
    return {
        "datasets": datasets,
        "days": DAYS,
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": sorted(times)[int(0.95 * (len(times) - 1))] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 300])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", str(RESULTS / ".airflow-home"))
    rows = [measure(n, args.repeat) for n in args.sizes]
    print(f"{'data sets':>10} {'days':>5} {'overview median ms':>19} {'p95 ms':>8}")
    for r in rows:
        print(f"{r['datasets']:>10} {r['days']:>5} {r['median_ms']:>19.1f} {r['p95_ms']:>8.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard_bench.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
