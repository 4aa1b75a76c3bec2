"""Adaptive pool vs static pools on the real stack: one split data set, 16 parts, a source of capacity 3.

    .venv/bin/python benchmarks/adaptive_bench.py [--query-seconds 12] [--static 1,3,8]

Brings up its own local stack (``.devstack-bench``: scheduler, API server, S3,
Hive, the SQL Server stand-in) with the bundle ``benchmarks/dags``, whose data
set ``bench_capacity`` exports ``dbo.bench_src`` as 16 key ranges (one bcp
query and one task each) in its pool. The stand-in gives the table a capacity
of 3 (``flux_capacity``: 4 queries at once run a little slower, 5 or more fail
as deadlock victims) and holds every query 12 s, so the queries, not the tasks'
start-up, load the source. Each configuration runs the DAG once, in turn:

* ``static N``: the pool pinned at N slots (the controller leaves it alone);
* ``adaptive (cold)``: the pool starts at its initial 8 slots, the controller adapts it;
* ``adaptive (warm)``: the run right after, from where the controller left it.

Reported per configuration: the run's wall time, rows/s, queries that failed
(deadlock victims, from the controller's own record of every try), retries, and
for adaptive the seconds from the first overload to the cut. Goals: adaptive >=
0.9x the best static pool's throughput, <= 1/5 of static 8's failures, the cut
within 3 controller periods (30 s here). Prints a table, writes
``benchmarks/results/adaptive.json`` and ``adaptive.png``; ``--down`` stops the
stack afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # tests.support
RESULTS = HERE / "results"
DATASET, DAG_ID, ROWS, PERIOD = "bench_capacity", "flux_bench_capacity", 1600, 10


def bring_up():
    """The benchmarks' stack (bundles ``benchmarks/dags`` and fleet_bench's fleet), its pools reset as the
    specs say, and a REST client."""
    from flux_devstack import Stack
    from flux_devstack.airflow_api import AirflowClient
    from tests.support.fleet import ensure_bundle

    fleet = ensure_bundle(REPO / ".devstack-bench" / "fleet")  # fleet_bench's generated data sets
    stack = Stack(
        run_dir=REPO / ".devstack-bench",
        dags_folder=REPO / "dags",
        dag_bundles={"flux-bench": HERE / "dags", "flux-bench-fleet": fleet},
    )
    stack.up()
    env = stack.env()
    os.environ.update({k: v for k, v in env.items() if k != "AIRFLOW_HOME"})
    subprocess.run(  # the data sets' pools and bounds as their specs say
        [sys.executable, "-m", "flux_provider.specs", "pools", "sync", "--reset", str(HERE / "dags")],
        env={**os.environ, "AIRFLOW_HOME": env["AIRFLOW_HOME"]},
        check=True,
        capture_output=True,
    )
    client = AirflowClient(env["FLUX_AIRFLOW_URL"], env["FLUX_AIRFLOW_USER"], env["FLUX_AIRFLOW_PASSWORD"])
    return stack, env, client


def prepare_source(env: dict, query_seconds: float) -> None:
    from flux_devstack.tds.capacity import CAPACITY_DDL
    from flux_devstack.tds.seed import load_seed

    db = Path(env["FLUX_MSSQL_DB"])
    load_seed(
        db, "DROP TABLE IF EXISTS dbo.bench_src;\nCREATE TABLE dbo.bench_src (id INT NOT NULL, txt NVARCHAR(40));"
    )
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO bench_src VALUES (?, ?)", [(i, f"row {i}") for i in range(1, ROWS + 1)])
        conn.execute(CAPACITY_DDL)
        conn.execute("DELETE FROM flux_faults WHERE pattern = 'bench_src'")
        conn.execute("INSERT INTO flux_faults VALUES ('bench_src', NULL, -1, ?, 0)", (query_seconds,))
        conn.execute(
            "INSERT OR REPLACE INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess, error_number) "
            "VALUES ('bench_src', 3, 1.0, 2, 1205)"
        )


def throttle_cli(env: dict, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "flux_provider.throttle", *args, "--reason", "adaptive_bench"],
        env={**os.environ, "AIRFLOW_HOME": env["AIRFLOW_HOME"]},
        check=True,
        capture_output=True,
    )


def outcomes(env: dict, run_id: str) -> list[dict]:
    from sqlalchemy import create_engine, select

    from flux_provider.throttle import store

    engine = create_engine(env["FLUX_AIRFLOW_DB"])
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                select(store.outcomes).where(store.outcomes.c.dataset == DATASET, store.outcomes.c.run_id == run_id)
            ).mappings()
        ]


def first_cut(env: dict, since: dt.datetime, overload: dt.datetime | None) -> float | None:
    from sqlalchemy import create_engine, select

    from flux_provider.throttle import store

    if overload is None:
        return None
    engine = create_engine(env["FLUX_AIRFLOW_DB"])
    with engine.connect() as conn:
        cuts = [
            r.at.replace(tzinfo=dt.timezone.utc)
            for r in conn.execute(select(store.events).where(store.events.c.dataset == DATASET))
            if r.old is not None and r.new is not None and r.new < r.old and r.actor == "controller"
        ]
    cuts = [c for c in cuts if c >= max(since, overload)]
    return (min(cuts) - overload).total_seconds() if cuts else None


def one_run(client, env: dict, label: str) -> dict:
    began = dt.datetime.now(dt.timezone.utc)
    result = client.run_dag(DAG_ID, timeout=1800)
    time.sleep(PERIOD + 2)  # the controller records the last tries at its next period
    run = client.request("GET", f"/dags/{DAG_ID}/dagRuns/{result.run_id}").json()
    seconds = (
        dt.datetime.fromisoformat(run["end_date"]) - dt.datetime.fromisoformat(run["start_date"])
    ).total_seconds()
    tries = [o for o in outcomes(env, result.run_id) if o["task_id"] == "export_upload"]
    failed = [o for o in tries if o["error_class"] == "deadlock"]
    overload = min((o["end_date"].replace(tzinfo=dt.timezone.utc) for o in failed), default=None)
    slots = client.request("GET", f"/pools/flux_{DATASET}").json()["slots"]
    row = {
        "config": label,
        "state": result.state,
        "seconds": round(seconds, 1),
        "rows_per_s": round(ROWS / seconds, 1),
        "queries_failed": len(failed),
        "parts": len({o["map_index"] for o in tries}),
        "retries": len(tries) - len({o["map_index"] for o in tries}),
        "cut_after_s": first_cut(env, began, overload) if label.startswith("adaptive") else None,
        "slots_after": slots,
    }
    print(
        f"{label:<18}{row['state']:<9}{row['seconds']:>8.1f}{row['rows_per_s']:>9.1f}{row['queries_failed']:>8}"
        f"{row['retries']:>9}{'-' if row['cut_after_s'] is None else format(row['cut_after_s'], '.0f'):>8}"
        f"{slots:>7}",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--query-seconds", type=float, default=12)
    parser.add_argument("--static", default="1,3,8", help="pinned pool sizes to compare")
    parser.add_argument("--down", action="store_true", help="stop the benchmark stack afterwards")
    args = parser.parse_args(argv)

    stack, env, client = bring_up()
    prepare_source(env, args.query_seconds)
    client.wait_for_dag(DAG_ID)
    print(f"{ROWS} rows in 16 parts; source capacity 3, each query {args.query_seconds:.0f} s; period {PERIOD} s\n")
    header = f"{'CONFIG':<18}{'STATE':<9}{'SECONDS':>8}{'ROWS/S':>9}{'FAILED':>8}{'RETRIES':>9}{'CUT S':>8}{'SLOTS':>7}"
    print(header + "\n" + "-" * len(header), flush=True)
    rows = []
    try:
        for slots in [int(s) for s in args.static.split(",")]:
            throttle_cli(env, "pin", DATASET, str(slots))
            rows.append(one_run(client, env, f"static {slots}"))
        throttle_cli(env, "unpin", DATASET)
        throttle_cli(env, "set", DATASET, "8")
        rows.append(one_run(client, env, "adaptive (cold)"))
        rows.append(one_run(client, env, "adaptive (warm)"))
    finally:
        if args.down:
            stack.down()
    best = max((r for r in rows if r["config"].startswith("static")), key=lambda r: r["rows_per_s"])
    eight = next((r for r in rows if r["config"] == "static 8"), None)
    print()
    for r in rows:
        if r["config"].startswith("adaptive"):
            vs_failed = f", {r['queries_failed']}/{eight['queries_failed']} of static 8's failures" if eight else ""
            ratio = r["rows_per_s"] / best["rows_per_s"]
            print(f"{r['config']}: {ratio:.2f}x the best static ({best['config']}){vs_failed}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "adaptive.json").write_text(json.dumps(rows, indent=1))
    from plot import bars

    bars(
        RESULTS / "adaptive.png",
        "16 parts on a source of capacity 3: static pools vs adaptive",
        [r["config"] for r in rows],
        {"rows/s": [r["rows_per_s"] for r in rows], "failed queries": [r["queries_failed"] for r in rows]},
        "rows/s | failed queries",
    )
    print(f"wrote {RESULTS / 'adaptive.json'} and adaptive.png")
    return 0 if all(r["state"] == "success" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
