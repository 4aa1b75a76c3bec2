"""Parallel scaling of the SQL Server stand-in: the same export as 1, 2 and 4 parts run at once.

    .venv/bin/python benchmarks/parallel_bench.py [--rows 1000000] [--parts 1,2,4] [--repeat 3]

Starts its own TDS stand-in over a generated table of viewing sessions and
exports it with the real freebcp, split by ``session_id`` into N key ranges,
each part its own connection (and so its own server process) running at the
same time, as the parts of a split data set do. Rows/s of the whole export per
N, best of ``--repeat`` (configurations alternate), and the speed-up against
one part. Goal on this 2-core machine: >= 1.6x at 2 parts. Prints a table,
writes ``benchmarks/results/parallel.json`` and ``parallel.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from export_bench import bench_login, free_port, generate, stand_in

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def export_parts(rows: int, parts: int, work: Path) -> float:
    """Seconds to export all ``rows`` as ``parts`` concurrent freebcp key-range exports."""
    from airflow.providers.microsoft.mssql.hooks.mssql import MsSqlHook

    from flux_provider.formats import export_file as fmt
    from flux_provider.hooks.bcp import BcpHook
    from flux_provider.hooks.dbapi_export import describe

    columns = describe(MsSqlHook(mssql_conn_id="bench"), "SELECT * FROM dbo.sessions")
    bounds = [rows * i // parts for i in range(parts + 1)]
    copied, errors = [0] * parts, []

    def one(i: int) -> None:
        where = f"session_id >= {bounds[i]} AND session_id < {bounds[i + 1]}"
        query = fmt.export_query(columns, query=f"SELECT * FROM dbo.sessions WHERE {where}")
        try:
            copied[i] = (
                BcpHook("bench", batch_size=100_000, log_every=3600)
                .export(
                    query,
                    str(work / f"part{i}.bcp"),
                    field_terminator=fmt.DEFAULT_FIELD_TERMINATOR,
                    row_terminator=fmt.DEFAULT_ROW_TERMINATOR,
                )
                .rows
            )
        except Exception as exc:  # reported below with the part
            errors.append(f"part {i}: {exc}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(parts)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if errors or sum(copied) != rows:
        raise SystemExit(f"{parts} parts: exported {sum(copied)} of {rows} rows; {errors}")
    for i in range(parts):
        (work / f"part{i}.bcp").unlink()
    return seconds


def start_source(work: Path, rows: int):
    """The stand-in SQL Server with ``rows`` generated rows, its connection as ``bench``: the server process."""
    port = free_port()
    users, os.environ["AIRFLOW_CONN_BENCH"] = bench_login(work, port)
    os.environ.setdefault("AIRFLOW_HOME", str(work / "airflow"))
    db = work / "source.sqlite"
    generate(db, rows)
    return stand_in(db, port, users)


def report(results: list[dict]) -> None:
    """The table, the JSON and the plot."""
    print(f"\n{'parts':>5} {'rows':>10} {'best s':>8} {'rows/s':>10} {'vs 1 part':>10}")
    for r in results:
        print(
            f"{r['parts']:>5} {r['rows']:>10,} {r['seconds']:>8.2f} {r['rows_per_s']:>10,.0f} "
            f"{r['speedup_vs_1']:>9.2f}x"
        )
    (RESULTS / "parallel.json").write_text(json.dumps(results, indent=2))
    from plot import bars

    bars(
        RESULTS / "parallel.png",
        "stand-in export throughput by parts (freebcp, best of runs)",
        [f"{r['parts']} part(s)" for r in results],
        {"rows/s": [r["rows_per_s"] for r in results]},
        "rows/s",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--parts", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("airflow.task.hooks").setLevel(logging.WARNING)  # one line per run, not per part
    counts = sorted(int(p) for p in args.parts.split(","))
    if counts[0] != 1:
        raise SystemExit("--parts must include 1 (the baseline)")

    RESULTS.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="flux-parallel-"))
    server = start_source(work, args.rows)
    best: dict[int, float] = {}
    try:
        time.sleep(1.5)
        for round_ in range(args.repeat):
            for parts in counts if round_ % 2 == 0 else reversed(counts):  # alternate the order
                seconds = export_parts(args.rows, parts, work)
                best[parts] = min(best.get(parts, seconds), seconds)
                print(f"  round {round_ + 1}: {parts} part(s) {seconds:6.2f}s", flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    one = best[1]
    results = [
        {
            "parts": n,
            "rows": args.rows,
            "seconds": best[n],
            "rows_per_s": args.rows / best[n],
            "speedup_vs_1": one / best[n],
        }
        for n in counts
    ]
    report(results)
    print(f"\nwrote {RESULTS / 'parallel.json'} and {RESULTS / 'parallel.png'}")


if __name__ == "__main__":
    main()
