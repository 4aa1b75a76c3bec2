"""Adaptive pools vs static pools on the real stack, over a source whose capacity changes during the run.

    .venv/bin/python benchmarks/adaptive_bench.py [--hold 10] [--phase 60] [--capacities 4,2,6] [--down]

Brings up its own local stack (``.devstack-bench``: scheduler, API server, S3,
Hive, the SQL Server stand-in) with the bundle ``benchmarks/dags``, whose data
set ``bench_capacity`` exports ``dbo.bench_src`` as 72 key ranges (one freebcp
query and one task each) in its pool. The stand-in's capacity model
(:mod:`flux_devstack.tds.capacity`) is what a loaded SQL Server does: every
query holds the table ``--hold`` seconds before its first row, plus up to 1.5 s
as the table's use grows to its capacity and 4 s per query above it; from two
above it, a query is a deadlock victim *after half its work* (it loaded the
source for nothing, and its try retries after 3 s). The capacity follows
``--capacities`` for ``--phase`` seconds each from the moment the run starts.

Each configuration runs the DAG once, in turn, on the same work:

* ``static 1``, ``static C`` and ``static 3C`` (``C`` the first capacity): the
  pool pinned; the controller leaves it alone (LocalExecutor's parallelism, 8
  here, caps any pool);
* ``aimd`` and ``gradient``: the controller adapts the pool from ``C`` slots
  with that limit (``python -m flux_provider.throttle limit``).

Reported per configuration, from the stand-in's own record of every query it
served (``flux_served``, ``flux_victims``) and Airflow's run: wall time,
victims, the source seconds they wasted, and for each capacity the controller
periods until the *source's* load (queries running at once, averaged over each
period) is within +-1 of that capacity and stays there: the pool's slots are
not the source's load, a slot is also held while a task starts up and uploads.
Goals, against ``static C`` in the same run: settles within 3 periods of each
change, victims at most 1.5x, wall time at most 1.0x. Prints a table, writes
``benchmarks/results/adaptive.json`` and ``adaptive.png`` (the source's load and
the pool's slots over time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # tests.support
RESULTS = HERE / "results"
DATASET, DAG_ID, PATTERN, PERIOD = "bench_capacity", "flux_bench_capacity", "bench_src", 10
PARTS, ROWS_PER_PART = 72, 50


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
    stack.up(restart=True)  # its own stack: started anew if it serves other folders
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


def source(env: dict) -> sqlite3.Connection:
    from flux_devstack.tds import capacity

    conn = sqlite3.connect(env["FLUX_MSSQL_DB"], timeout=30, isolation_level=None)
    capacity.create_tables(conn)
    return conn


def prepare_source(env: dict, hold: float, first_capacity: int) -> None:
    from flux_devstack.tds.seed import load_seed

    load_seed(
        Path(env["FLUX_MSSQL_DB"]),
        f"DROP TABLE IF EXISTS dbo.{PATTERN};\nCREATE TABLE dbo.{PATTERN} (id INT NOT NULL, txt NVARCHAR(40));",
    )
    conn = source(env)
    conn.executemany(
        f"INSERT INTO {PATTERN} VALUES (?, ?)", [(i, f"row {i}") for i in range(1, PARTS * ROWS_PER_PART + 1)]
    )
    conn.execute("DELETE FROM flux_faults WHERE pattern = ?", (PATTERN,))
    conn.execute("INSERT INTO flux_faults VALUES (?, NULL, -1, ?, 0)", (PATTERN, hold))
    set_capacity(conn, first_capacity)


def set_capacity(conn: sqlite3.Connection, capacity: int) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess, error_number, "
        "load_seconds, victim_after) VALUES (?, ?, 4.0, 2, 1205, 1.5, 0.5)",
        (PATTERN, capacity),
    )


def throttle_cli(env: dict, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "flux_provider.throttle", *args, "--reason", "adaptive_bench"],
        env={**os.environ, "AIRFLOW_HOME": env["AIRFLOW_HOME"]},
        check=True,
        capture_output=True,
    )


def slot_history(env: dict, since: float, until: float) -> list[tuple[float, int]]:
    """(time, slots) of the pool from ``since``: the value at ``since``, then every change."""
    from sqlalchemy import create_engine, select

    from flux_provider.throttle import store

    engine = create_engine(env["FLUX_AIRFLOW_DB"])
    with engine.connect() as conn:
        rows = conn.execute(
            select(store.events.c.at, store.events.c.new)
            .where(store.events.c.dataset == DATASET, store.events.c.new.is_not(None))
            .order_by(store.events.c.id)
        ).all()
    engine.dispose()
    stamped = [(at.replace(tzinfo=dt.timezone.utc).timestamp(), new) for at, new in rows]
    before = [new for t, new in stamped if t <= since]
    return [(since, before[-1] if before else 0)] + [(t, n) for t, n in stamped if since < t <= until]


def load_per_period(served: list[tuple[float, float]], start: float, end: float) -> list[float]:
    """Queries running at the source, averaged over each controller period in [start, end)."""
    out, t = [], start
    while t + PERIOD <= end + 1e-9:
        busy = sum(max(0.0, min(b, t + PERIOD) - max(a, t)) for a, b in served)
        out.append(busy / PERIOD)
        t += PERIOD
    return out


def settle_periods(loads: list[float], capacity: int) -> int | None:
    """Periods from a change until the load is within +-1 of ``capacity`` and stays there; None: never."""
    for k in range(len(loads)):
        if all(abs(v - capacity) <= 1 for v in loads[k:]):
            return k
    return None


def follow_schedule(changes: list[float], capacities: list[int], apply) -> threading.Event:
    """In a thread: ``apply(capacity)`` at each time of ``changes`` after the first; set the returned event to
    stop it early."""
    stop = threading.Event()

    def follow():
        for when, capacity in zip(changes[1:], capacities[1:], strict=True):
            if stop.wait(max(0.0, when - time.time())):
                return
            apply(capacity)

    threading.Thread(target=follow, daemon=True).start()
    return stop


def one_run(client, env: dict, label: str, capacities: list[int], phase: float) -> dict:
    conn = source(env)
    set_capacity(conn, capacities[0])
    began = time.time()
    run_id = client.trigger(DAG_ID)
    changes = [began + i * phase for i in range(len(capacities))]
    stop = follow_schedule(changes, capacities, lambda capacity: set_capacity(source(env), capacity))
    result = client.wait_for_run(DAG_ID, run_id, timeout=3600)
    stop.set()
    ended = time.time()
    time.sleep(PERIOD + 2)  # the controller records the last tries at its next period
    served = conn.execute(
        "SELECT started, ended, victim FROM flux_served WHERE pattern = ? AND started >= ? ORDER BY started",
        (PATTERN, began),
    ).fetchall()
    victims = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(failed - started), 0) FROM flux_victims WHERE pattern = ? AND started >= ?",
        (PATTERN, began),
    ).fetchone()
    last_start = max((a for a, _, _ in served), default=ended)
    settle = []
    for i, capacity in enumerate(capacities):
        start, end = changes[i], min(changes[i + 1] if i + 1 < len(changes) else ended, last_start)
        loads = load_per_period([(a, b) for a, b, _ in served], start, end) if end > start else []
        settle.append(settle_periods(loads, capacity) if loads else None)
    row = {
        "config": label,
        "state": result.state,
        "seconds": round(ended - began, 1),
        "victims": victims[0],
        "wasted_s": round(victims[1], 1),
        "queries": len(served),
        "settle": settle,
        "phases_seen": sum(1 for i in range(len(capacities)) if changes[i] < last_start),
        "slots": slot_history(env, began, ended),
        "served": [(round(a - began, 2), round(b - began, 2), v) for a, b, v in served],
        "changes": [round(c - began, 1) for c in changes],
    }
    settled = " ".join("-" if s is None else str(s) for s in settle)
    print(
        f"{label:<12}{row['state']:<9}{row['seconds']:>8.1f}{row['victims']:>9}{row['wasted_s']:>10.1f}"
        f"{row['queries']:>9}   {settled}",
        flush=True,
    )
    return row


def verdicts(rows: list[dict], reference: str) -> list[str]:
    ref = next(r for r in rows if r["config"] == reference)
    out = []
    for r in rows:
        if r["config"] not in ("aimd", "gradient"):
            continue
        seen = r["settle"][: r["phases_seen"]]
        settled = all(s is not None and s <= 3 for s in seen[1:])  # each change; the start is not a change
        victims = r["victims"] <= 1.5 * ref["victims"] if ref["victims"] else r["victims"] == 0
        wall = r["seconds"] / ref["seconds"]
        out.append(
            f"{r['config']}: settles within 3 periods of each change: {'met' if settled else 'missed'} "
            f"({' '.join('-' if s is None else str(s) for s in seen[1:])}); victims {r['victims']} vs "
            f"{ref['victims']} ({'met' if victims else 'missed'}, goal <= 1.5x); wall time {wall:.2f}x "
            f"({'met' if wall <= 1.0 else 'missed'}, goal <= 1.0x)"
        )
    return out


def plot(rows: list[dict], capacities: list[int], phase: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.2 * len(rows)), sharex=True)
    for ax, r in zip(axes, rows, strict=True):
        end = r["seconds"]
        ts = [i * 2.0 for i in range(int(end / 2) + 1)]
        load = [sum(1 for a, b, _ in r["served"] if a <= t < b) for t in ts]
        ax.plot(ts, load, lw=0.8, label="queries at the source")
        cap_t = [0.0] + [c for c in r["changes"][1:] for _ in (0, 1)] + [end]
        cap_v = [v for v in capacities for _ in (0, 1)]
        ax.plot(cap_t, cap_v, "k--", lw=1, label="capacity")
        began = r["slots"][0][0]
        st = [t - began for t, _ in r["slots"]] + [end]
        sv = [v for _, v in r["slots"]]
        ax.step(st, sv + sv[-1:], where="post", lw=1.2, label="pool slots")
        for a, _, v in r["served"]:
            if v:
                ax.axvline(a, color="red", alpha=0.15, lw=1)
        ax.set_title(f"{r['config']}: {r['seconds']:.0f} s, {r['victims']} victims (red)", fontsize=9)
        ax.set_ylim(0, 10)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("seconds since the run started")
    fig.tight_layout()
    fig.savefig(RESULTS / "adaptive.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=8, help="seconds each query holds the table")
    parser.add_argument("--phase", type=float, default=60, help="seconds each capacity lasts")
    parser.add_argument("--capacities", default="4,2,6")
    parser.add_argument("--configs", default="static 1,static C,static 3C,aimd,gradient")
    parser.add_argument("--down", action="store_true", help="stop the benchmark stack afterwards")
    args = parser.parse_args(argv)
    capacities = [int(c) for c in args.capacities.split(",")]
    first = capacities[0]

    stack, env, client = bring_up()
    prepare_source(env, args.hold, first)
    client.wait_for_dag(DAG_ID)
    print(
        f"{PARTS} parts, each query {args.hold:.0f} s; source capacity {' -> '.join(map(str, capacities))}, "
        f"{args.phase:.0f} s each; controller period {PERIOD} s\n"
    )
    header = f"{'CONFIG':<12}{'STATE':<9}{'SECONDS':>8}{'VICTIMS':>9}{'WASTED S':>10}{'QUERIES':>9}   SETTLE (periods)"
    print(header + "\n" + "-" * (len(header) + 6), flush=True)
    rows = []
    try:
        for config in [c.strip() for c in args.configs.split(",")]:
            if config.startswith("static"):
                n = config.split()[1]
                slots = first * 3 if n == "3C" else first if n == "C" else int(n)
                throttle_cli(env, "pin", DATASET, str(slots))
                label = f"static {slots}"
            else:
                throttle_cli(env, "limit", DATASET, config)
                throttle_cli(env, "unpin", DATASET)
                throttle_cli(env, "set", DATASET, str(first))
                label = config
            rows.append(one_run(client, env, label, capacities, args.phase))
    finally:
        if args.down:
            stack.down()
    print()
    lines = verdicts(rows, f"static {first}")
    for line in lines:
        print(line)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "adaptive.json").write_text(
        json.dumps({"capacities": capacities, "phase": args.phase, "hold": args.hold, "rows": rows, "goals": lines})
    )
    plot(rows, capacities, args.phase)
    print(f"wrote {RESULTS / 'adaptive.json'} and adaptive.png")
    return 0 if all(r["state"] == "success" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
