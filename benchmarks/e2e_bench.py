"""End to end, flux vs the stock Airflow chain: the same table, the same stack, the real scheduler, alternated.

    .venv/bin/python benchmarks/e2e_bench.py [--rows 2000000] [--repeat 2] [--down]

Brings up its own local stack (``.devstack-bench``, bundle ``benchmarks/dags``),
generates ``dbo.bench_sessions`` (viewing sessions: BIGINT, NVARCHAR, DATETIME2,
DECIMAL) in the SQL Server stand-in and runs two DAGs over it in turn, each once
per round (the order alternates):

* ``flux_bench_e2e`` (specs/bench_e2e.xml): 2 key-range parts (one per core
  here), each freebcp streamed through the Hive encoder into S3 chunks
  (uncompressed, as the stock chain's CSV) in the data set's pool; one
  publish; the staging table read by a 1:1 ``INSERT OVERWRITE`` into the target,
  reconciled against the export's count;
* ``stock_chain`` (stock_chain.py): ``SqlToS3Operator`` -> ``S3ToHiveOperator``
  -> ``HiveOperator``, what Airflow's own providers offer for the same job.

Measured per run: wall time of the DAG run (from Airflow's own start and end
dates), the target table's row count (both must hold every row), and the peak
RSS of every task's process tree (the task process plus its children: freebcp,
beeline's JVM), sampled every 50 ms from the task processes Airflow names
``airflow worker -- <task instance id>``, and its peak USS (the pages the task
alone holds, not those shared with the executor worker it was forked from),
every 0.5 s. Goals (issue 15): flux <= 0.3x the
stock chain's time at 2M rows, peak task RSS <= 0.35x. Prints a table, writes
``benchmarks/results/e2e.json`` and ``e2e.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import threading
from pathlib import Path

from adaptive_bench import RESULTS, bring_up
from export_bench import generate

from flux_provider.run_report import stage_times

CHAINS = {"flux": "flux_bench_e2e", "stock": "stock_chain"}
TARGETS = {"flux": "flux_bench.e2e_sessions", "stock": "flux_bench.stock_sessions"}
TABLE = "bench_sessions"
#: The process title Airflow's task runner sets (the LocalExecutor's own workers say "LocalExecutor: ...").
TASK_TITLE = re.compile(r"^airflow worker -- ([0-9a-f-]{36})\s*$")


class TaskMemory:
    """Peak RSS and USS (MB) of each running task's process tree, by task instance id, sampled in a thread.

    RSS counts the pages a task process shares with the executor worker it was forked from (Airflow
    itself, about 240 MB here); USS only the pages the task alone holds.
    """

    def __init__(self, every: float = 0.05):
        self.every, self.peaks, self.unique, self._stop = every, {}, {}, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TaskMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        import psutil

        tick = 0
        while not self._stop.wait(self.every):
            tick += 1
            for proc in psutil.process_iter(["cmdline"]):
                match = TASK_TITLE.match(" ".join(proc.info["cmdline"] or []))
                if not match:
                    continue
                ti_id = match.group(1)
                try:
                    tree = [proc, *proc.children(recursive=True)]
                    rss = sum(p.memory_info().rss for p in tree)
                    # USS reads /proc/<pid>/smaps, which costs CPU the tasks need: every 0.5 s only
                    uss = sum(p.memory_full_info().uss for p in tree) if tick % 10 == 0 else 0
                except psutil.Error:  # the task ended while being sampled
                    continue
                self.peaks[ti_id] = max(self.peaks.get(ti_id, 0.0), rss / 2**20)
                self.unique[ti_id] = max(self.unique.get(ti_id, 0.0), uss / 2**20)


def prepare_source(env: dict, rows: int) -> None:
    db = Path(env["FLUX_MSSQL_DB"])
    with sqlite3.connect(db) as conn:
        have = conn.execute(f"SELECT name FROM sqlite_master WHERE name = '{TABLE}'").fetchone()
        count = conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0] if have else -1
    if count != rows:
        print(f"generating {rows:,} rows in dbo.{TABLE} ...", flush=True)
        generate(db, rows, TABLE)


def airflow_cli(env: dict, *args: str, check: bool = True) -> None:
    subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env={**os.environ, "AIRFLOW_HOME": env["AIRFLOW_HOME"]},
        check=check,
        capture_output=True,
    )


def prepare_stock(env: dict) -> None:
    """The ``hive_cli_bench`` connection (beeline to the stack's HiveServer2) and the target's database."""
    from airflow.providers.apache.hive.hooks.hive import HiveServer2Hook

    airflow_cli(env, "connections", "delete", "hive_cli_bench", check=False)
    conn = {
        "conn_type": "hive_cli",
        "host": "127.0.0.1",
        "port": int(env["FLUX_HIVESERVER2_PORT"]),
        "schema": "default",
        "login": "airflow",
        "extra": {"use_beeline": True},
    }
    airflow_cli(env, "connections", "add", "hive_cli_bench", "--conn-json", json.dumps(conn))
    HiveServer2Hook().run("CREATE DATABASE IF NOT EXISTS flux_bench")


def target_rows(chain: str) -> int:
    from airflow.providers.apache.hive.hooks.hive import HiveServer2Hook

    return int(HiveServer2Hook().get_records(f"SELECT COUNT(*) FROM {TARGETS[chain]}")[0][0])


def one_run(client, chain: str, rows: int) -> dict:
    import datetime as dt

    dag_id = CHAINS[chain]
    with TaskMemory() as memory:  # HiveOperator refuses a run without a logical date
        result = client.run_dag(dag_id, timeout=3600, logical_date=dt.datetime.now(dt.timezone.utc).isoformat())
    run = client.request("GET", f"/dags/{dag_id}/dagRuns/{result.run_id}").json()
    seconds = (
        dt.datetime.fromisoformat(run["end_date"]) - dt.datetime.fromisoformat(run["start_date"])
    ).total_seconds()
    tis = client.request("GET", f"/dags/{dag_id}/dagRuns/{result.run_id}/taskInstances?limit=100").json()
    tasks = {}
    for ti in tis["task_instances"]:
        name = ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"
        duration = ti.get("duration") or 0.0
        tasks[name] = {
            "seconds": round(duration, 1),
            "peak_rss_mb": round(memory.peaks.get(ti["id"], 0.0)),
            "peak_uss_mb": round(memory.unique.get(ti["id"], 0.0)),
        }
    stages = stage_times(run["start_date"], tis["task_instances"])
    loaded = target_rows(chain) if result.state == "success" else 0
    row = {
        "chain": chain,
        "state": result.state,
        "rows": rows,
        "rows_loaded": loaded,
        "seconds": round(seconds, 1),
        "peak_task_rss_mb": max((t["peak_rss_mb"] for t in tasks.values()), default=0),
        "peak_task_uss_mb": max((t["peak_uss_mb"] for t in tasks.values()), default=0),
        "tasks": tasks,
        "stages": stages,
    }
    busiest = max(tasks, key=lambda t: tasks[t]["peak_rss_mb"]) if tasks else "-"
    print(
        f"{chain:<7}{row['state']:<9}{rows:>11,}{loaded:>11,}{row['seconds']:>9.1f}"
        f"{row['peak_task_rss_mb']:>10}{row['peak_task_uss_mb']:>10}  {busiest}",
        flush=True,
    )
    # where the time went: waiting for the scheduler + for a slot and the task's start + the task itself
    print("        " + "  ".join(f"{s['task']} {s['gap']}+{s['queued']}+{s['ran']}" for s in stages), flush=True)
    return row


def summarize(runs: list[dict]) -> dict:
    """Per chain, over its successful runs: median and best seconds, the biggest task's peak RSS and USS."""
    summary = {}
    for chain in CHAINS:
        mine = [r for r in runs if r["chain"] == chain and r["state"] == "success"]
        if mine:
            summary[chain] = {
                "median_seconds": statistics.median(r["seconds"] for r in mine),
                "best_seconds": min(r["seconds"] for r in mine),
                "peak_task_rss_mb": max(r["peak_task_rss_mb"] for r in mine),
                "peak_task_uss_mb": max(r["peak_task_uss_mb"] for r in mine),
            }
    return summary


def compare(summary: dict, runs: list[dict], rows: int) -> None:
    """flux against stock, as ratios, and the flux part tasks' memory."""
    if len(summary) == 2:
        flux, stock = summary["flux"], summary["stock"]
        print(
            f"\nflux vs stock at {rows:,} rows: time {flux['median_seconds'] / stock['median_seconds']:.2f}x "
            f"(median; best {flux['best_seconds'] / stock['best_seconds']:.2f}x; goal <= 0.3x), "
            f"peak task RSS {flux['peak_task_rss_mb'] / stock['peak_task_rss_mb']:.2f}x (goal <= 0.35x)"
        )
        print(f"peak task USS (what the task alone holds) {flux['peak_task_uss_mb'] / stock['peak_task_uss_mb']:.2f}x")
        parts = [t for r in runs if r["chain"] == "flux" for n, t in r["tasks"].items() if "[" in n]
        idle = [r["tasks"]["plan"] for r in runs if r["chain"] == "flux" and "plan" in r["tasks"]]
        if parts and idle:
            print(
                f"flux part tasks: peak RSS {max(t['peak_rss_mb'] for t in parts)} MB, USS "
                f"{max(t['peak_uss_mb'] for t in parts)} MB (goal <= 256 MB per task); the plan task, which "
                f"holds no data: RSS {max(t['peak_rss_mb'] for t in idle)} MB, "
                f"USS {max(t['peak_uss_mb'] for t in idle)} MB"
            )


def plot(summary: dict, rows: int) -> None:
    from plot import panels

    panels(
        RESULTS / "e2e.png",
        [
            (
                f"end to end, {rows:,} rows: seconds",
                ["flux", "stock"],
                _series(summary, "median_seconds"),
                "s",
            ),
            (
                "peak memory of the biggest task",
                ["flux", "stock"],
                {**_series(summary, "peak_task_rss_mb"), **_series(summary, "peak_task_uss_mb")},
                "MB",
            ),
        ],
    )
    print(f"wrote {RESULTS / 'e2e.json'} and e2e.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="rounds; each runs both chains, order alternating")
    parser.add_argument("--down", action="store_true", help="stop the benchmark stack afterwards")
    args = parser.parse_args(argv)

    stack, env, client = bring_up()
    prepare_source(env, args.rows)
    prepare_stock(env)
    for dag_id in CHAINS.values():
        client.wait_for_dag(dag_id)
    header = (
        f"{'CHAIN':<7}{'STATE':<9}{'ROWS':>11}{'LOADED':>11}{'SECONDS':>9}{'RSS MB':>10}{'USS MB':>10}  BIGGEST TASK"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    runs = []
    try:
        for round_ in range(args.repeat):
            for chain in ("flux", "stock") if round_ % 2 == 0 else ("stock", "flux"):
                runs.append(one_run(client, chain, args.rows))
    finally:
        if args.down:
            stack.down()
    ok = all(r["state"] == "success" and r["rows_loaded"] == r["rows"] for r in runs)
    summary = summarize(runs)
    compare(summary, runs, args.rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "e2e.json").write_text(json.dumps({"rows": args.rows, "runs": runs, "summary": summary}, indent=1))
    if len(summary) == 2:
        plot(summary, args.rows)
    if not ok:
        print("some run failed or lost rows: see the table above", file=sys.stderr)
    return 0 if ok else 1


def _series(summary: dict, key: str) -> dict[str, list[float]]:
    return {key.replace("_", " "): [summary["flux"][key], summary["stock"][key]]}


if __name__ == "__main__":
    raise SystemExit(main())
