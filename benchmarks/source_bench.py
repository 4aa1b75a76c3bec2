"""One SQL Server, three data sets: per-data-set pools vs the shared source budget vs pools pinned at the
capacity, on the real stack, over a server whose capacity changes during the run.

    .venv/bin/python benchmarks/source_bench.py [--hold 15] [--phase 60] [--capacities 6,2,9] [--rounds 2] [--down]

The bundle ``benchmarks/dags`` holds ``bench_source_1..3``: each splits its table into 8 key ranges (one
freebcp query and one task each) in a pool of its own, and all three name the source ``bench_backend``.
The stand-in's server-wide capacity model (:mod:`flux_devstack.tds.capacity`, the ``*`` row, which its
views show as SQL Server's memory grants) is what a loaded SQL Server does: every query holds the server
``--hold`` seconds; above the capacity a query waits 2 s per query above it for a grant, and from two above
it is a deadlock victim after half its work. One other user holds a grant all along, so the room for our
queries is the capacity less one. The capacity follows ``--capacities`` for ``--phase`` seconds each.

Configurations, alternated in each of ``--rounds`` rounds on the same work:

* ``pools``: each data set's pool adapts alone (gradient), the source budget pinned open (its high);
* ``shared``: the source budget sized from the server's state, cut into the three pools;
* ``pinned``: each pool pinned to its share of the first room (2, 2, 1 for a room of 5), the budget open.

Reported per run, from the stand-in's own record of every query it served (``flux_served``,
``flux_victims``) and Airflow's runs: wall time (all three runs), victims, the seconds they wasted, the
longest query, the controller periods after each change until the slots the three pools allow together
(the budget, when it binds) are within +-1 of the room and stay there (our load at the server is also
bounded by the parts left, so it is not the measure), and the longest streak of periods in which the
server held more than its capacity + 1 (our queries at once, averaged over each period, and the other
user's). Goals, against ``pinned`` in the same round: wall time <= 1.0x, victims
<= 1.5x, settling within 3 periods of every change, never above capacity + 1 for more than one period.
Prints a table, writes ``benchmarks/results/source.json`` and ``source.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from adaptive_bench import (  # noqa: E402
    RESULTS,
    bring_up,
    follow_schedule,
    load_per_period,
    settle_periods,
    throttle_cli,
)

SOURCE, PATTERN, OTHERS = "bench_backend", "shared_fact", 1
DATASETS = ("bench_source_1", "bench_source_2", "bench_source_3")
PARTS, ROWS_PER_PART = 8, 50
PERIOD = 10


def server(env: dict) -> sqlite3.Connection:
    from flux_devstack.tds import capacity

    conn = sqlite3.connect(env["FLUX_MSSQL_DB"], timeout=30, isolation_level=None)
    capacity.create_tables(conn)
    return conn


def prepare(env: dict, hold: float) -> None:
    from flux_devstack.tds.seed import load_seed

    conn = server(env)
    for n in range(1, len(DATASETS) + 1):
        load_seed(
            Path(env["FLUX_MSSQL_DB"]),
            f"DROP TABLE IF EXISTS dbo.{PATTERN}_{n};\n"
            f"CREATE TABLE dbo.{PATTERN}_{n} (id INT NOT NULL, txt NVARCHAR(40));",
        )
        conn.executemany(
            f"INSERT INTO {PATTERN}_{n} VALUES (?, ?)", [(i, f"row {i}") for i in range(1, PARTS * ROWS_PER_PART + 1)]
        )
    conn.execute("DELETE FROM flux_faults WHERE pattern = ?", (PATTERN,))
    conn.execute("INSERT INTO flux_faults VALUES (?, NULL, -1, ?, 0)", (PATTERN, hold))


def set_capacity(conn: sqlite3.Connection, capacity: int) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess, error_number, "
        "load_seconds, victim_after, others) VALUES ('*', ?, 2.0, 2, 1205, 0, 0.5, ?)",
        (capacity, OTHERS),
    )


def configure(env: dict, config: str, room: int) -> None:
    """The pools and the source budget as ``config`` has them (through the CLI, as a person would)."""
    high = 8 * len(DATASETS)
    if config == "shared":
        throttle_cli(env, "source", "unpin", SOURCE)
    else:
        throttle_cli(env, "source", "pin", SOURCE, str(high))
    shares = [room // len(DATASETS) + (1 if i < room % len(DATASETS) else 0) for i in range(len(DATASETS))]
    for name, share in zip(DATASETS, shares):
        if config == "pinned":
            throttle_cli(env, "pin", name, str(max(share, 1)))
        else:
            throttle_cli(env, "limit", name, "gradient")
            throttle_cli(env, "unpin", name)
            throttle_cli(env, "set", name, "4")


def one_run(client, env: dict, config: str, capacities: list[int], phase: float) -> dict:
    conn = server(env)
    configure(env, config, capacities[0] - OTHERS)
    set_capacity(conn, capacities[0])
    time.sleep(PERIOD + 1)  # a period under the new settings before the runs start
    began = time.time()
    runs = {name: client.trigger(f"flux_{name}") for name in DATASETS}
    changes = [began + i * phase for i in range(len(capacities))]
    stop = follow_schedule(changes, capacities, lambda capacity: set_capacity(server(env), capacity))
    states = [client.wait_for_run(f"flux_{name}", run_id, timeout=3600).state for name, run_id in runs.items()]
    stop.set()
    ended = time.time()
    served = conn.execute(  # every query the server served (the row '*' counts them all): ours
        "SELECT started, ended, victim FROM flux_served WHERE pattern = '*' AND started >= ? ORDER BY started",
        (began,),
    ).fetchall()
    victims = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(failed - started), 0) FROM flux_victims WHERE pattern = '*' AND started >= ?",
        (began,),
    ).fetchone()
    spans = [(a, b) for a, b, _ in served]
    last_start = max((a for a, _, _ in served), default=ended)
    allowed = slot_sums(env, began, ended)
    settle, over = [], 0
    for i, capacity in enumerate(capacities):
        start, end = changes[i], min(changes[i + 1] if i + 1 < len(changes) else ended, last_start)
        settle.append(
            settle_periods(allowed_per_period(allowed, start, end), capacity - OTHERS) if end > start else None
        )
        loads = load_per_period(spans, start, end) if end > start else []
        over = max(over, _longest_streak([v + OTHERS > capacity + 1 for v in loads]))
    row = {
        "config": config,
        "state": "success" if all(s == "success" for s in states) else ",".join(states),
        "seconds": round(ended - began, 1),
        "victims": victims[0],
        "wasted_s": round(victims[1], 1),
        "longest_query": round(max((b - a for a, b, v in served if not v), default=0.0), 1),
        "settle": settle,
        "over_periods": over,
        "phases_seen": sum(1 for c in changes if c < last_start),
        "served": [(round(a - began, 2), round(b - began, 2), v) for a, b, v in served],
        "changes": [round(c - began, 1) for c in changes],
    }
    settled = " ".join("-" if s is None else str(s) for s in settle)
    print(
        f"{config:<9}{row['state']:<9}{row['seconds']:>8.1f}{row['victims']:>9}{row['wasted_s']:>10.1f}"
        f"{row['longest_query']:>10.1f}{over:>6}   {settled}",
        flush=True,
    )
    return row


def slot_sums(env: dict, since: float, until: float) -> list[tuple[float, int]]:
    """(time, the three pools' slots together) from ``since``: what the orchestrator lets run at once."""
    from sqlalchemy import create_engine, select

    from flux_provider.throttle import store

    engine = create_engine(env["FLUX_AIRFLOW_DB"])
    with engine.connect() as conn:
        rows = conn.execute(
            select(store.events.c.at, store.events.c.dataset, store.events.c.new)
            .where(store.events.c.dataset.in_(DATASETS), store.events.c.new.is_not(None))
            .order_by(store.events.c.id)
        ).all()
    engine.dispose()
    current = dict.fromkeys(DATASETS, 0)
    out = []
    for at, dataset, new in rows:
        t = at.replace(tzinfo=dt.timezone.utc).timestamp()
        current[dataset] = new
        if t > until:
            break
        if t <= since:
            out = [(since, sum(current.values()))]
        else:
            out.append((t, sum(current.values())))
    return out


def allowed_per_period(sums: list[tuple[float, int]], start: float, end: float) -> list[float]:
    """The slots allowed at the end of each controller period in [start, end)."""
    out, t = [], start + PERIOD
    while t <= end + 1e-9:
        out.append(next((v for when, v in reversed(sums) if when <= t), 0))
        t += PERIOD
    return out


def _longest_streak(flags: list[bool]) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def verdicts(rows: list[dict]) -> list[str]:
    out = []
    for n in range(0, len(rows), 3):
        block = {r["config"]: r for r in rows[n : n + 3]}
        ref, shared = block.get("pinned"), block.get("shared")
        if ref is None or shared is None:
            continue
        seen = shared["settle"][1 : shared["phases_seen"]]
        settled = all(s is not None and s <= 3 for s in seen)
        wall = shared["seconds"] / ref["seconds"]
        victims = shared["victims"] <= 1.5 * ref["victims"] if ref["victims"] else shared["victims"] == 0
        out.append(
            f"round {n // 3 + 1}: shared vs pinned: wall time {wall:.2f}x ({'met' if wall <= 1.0 else 'missed'}, "
            f"goal <= 1.0x); victims {shared['victims']} vs {ref['victims']} ({'met' if victims else 'missed'}, "
            f"goal <= 1.5x); settles within 3 periods of each change: {'met' if settled else 'missed'} "
            f"({' '.join('-' if s is None else str(s) for s in seen)}); above capacity + 1 for "
            f"{shared['over_periods']} periods in a row "
            f"({'met' if shared['over_periods'] <= 1 else 'missed'}, goal <= 1)"
        )
    return out


def plot(rows: list[dict], capacities: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.0 * len(rows)), sharex=True)
    for ax, r in zip(axes, rows, strict=True):
        end = r["seconds"]
        ts = [i * 2.0 for i in range(int(end / 2) + 1)]
        ax.plot(ts, [sum(1 for a, b, _ in r["served"] if a <= t < b) for t in ts], lw=0.8, label="our queries")
        cap_t = [0.0] + [c for c in r["changes"][1:] for _ in (0, 1)] + [end]
        ax.plot(cap_t, [v - OTHERS for v in capacities for _ in (0, 1)], "k--", lw=1, label="room (capacity - others)")
        for a, _, v in r["served"]:
            if v:
                ax.axvline(a, color="red", alpha=0.15, lw=1)
        ax.set_title(f"{r['config']}: {r['seconds']:.0f} s, {r['victims']} victims (red)", fontsize=9)
        ax.set_ylim(0, max(capacities) + 4)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("seconds since the runs started")
    fig.tight_layout()
    fig.savefig(RESULTS / "source.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=15, help="seconds each query holds the server")
    parser.add_argument("--phase", type=float, default=60, help="seconds each capacity lasts")
    parser.add_argument("--capacities", default="6,2,9", help="the server's capacity (one other user holds 1)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--configs", default="pools,shared,pinned")
    parser.add_argument("--down", action="store_true", help="stop the benchmark stack afterwards")
    args = parser.parse_args(argv)
    capacities = [int(c) for c in args.capacities.split(",")]
    stack, env, client = bring_up()
    prepare(env, args.hold)
    for name in DATASETS:
        client.wait_for_dag(f"flux_{name}")
        client.request("PATCH", f"/dags/flux_{name}", json={"is_paused": False})
    print(
        f"3 data sets x {PARTS} parts, each query {args.hold:.0f} s; server capacity "
        f"{' -> '.join(map(str, capacities))} ({OTHERS} held by another user), {args.phase:.0f} s each; "
        f"controller period {PERIOD} s\n"
    )
    header = f"{'CONFIG':<9}{'STATE':<9}{'SECONDS':>8}{'VICTIMS':>9}{'WASTED S':>10}{'LONGEST':>10}{'OVER':>6}   SETTLE"
    print(header + "\n" + "-" * (len(header) + 6), flush=True)
    rows = []
    try:
        for _ in range(args.rounds):
            for config in [c.strip() for c in args.configs.split(",")]:
                rows.append(one_run(client, env, config, capacities, args.phase))
    finally:
        server(env).execute("DELETE FROM flux_capacity WHERE pattern = '*'")
        if args.down:
            stack.down()
    print()
    lines = verdicts(rows)
    for line in lines:
        print(line)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "source.json").write_text(
        json.dumps({"capacities": capacities, "phase": args.phase, "hold": args.hold, "rows": rows, "goals": lines})
    )
    plot(rows, capacities)
    print(f"wrote {RESULTS / 'source.json'} and source.png")
    return 0 if all(r["state"] == "success" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
