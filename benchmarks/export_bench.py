"""Export benchmark: freebcp engine vs DB-API engine vs the stock ``MsSqlHook.get_df`` (pandas) path.

    .venv/bin/python benchmarks/export_bench.py [--rows 1000000,5000000]

Starts its own TDS test server (the SQL Server stand-in) on a free port over a
generated SQLite table of viewing sessions, then exports the same query with
each engine, each in a fresh process so peak RSS is its own. Prints a table,
writes ``benchmarks/results/export.json`` and ``export.png``.

The stand-in (Python) is the slowest part of the chain and is the same for all
three, so compare ratios, not absolute rows/s: the machine is shared and noisy.
The stock path is what ``SqlToS3Operator`` does: the whole result as one
pandas DataFrame, then ``to_csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ENGINES = ("freebcp", "dbapi", "stock_get_df")
QUERY = "SELECT * FROM dbo.sessions"
DEVICES = ["tv", "phone", "tablet", "web", "console"]


def generate(db: Path, rows: int, table: str = "sessions") -> None:
    """``rows`` viewing sessions as SQLite table ``table`` (the stand-in serves it as ``dbo.<table>``)."""
    rnd = random.Random(42)
    with sqlite3.connect(db) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(
            f"CREATE TABLE {table} (session_id BIGINT NOT NULL, subscriber_id BIGINT, title NVARCHAR(100), "
            "started_at DATETIME2(3), seconds INT, revenue TEXT DECIMAL(12,2), device NVARCHAR(20))"
        )
        conn.executemany(
            f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    i,
                    rnd.randrange(10**6),
                    f"Title {rnd.randrange(5000)} ü",
                    f"2026-01-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}.{i % 1000:03d}",
                    rnd.randrange(7200),
                    f"{rnd.randrange(100000) / 100:.2f}",
                    DEVICES[i % 5],
                )
                for i in range(rows)
            ),
        )


def stand_in(db: Path, port: int, users: Path) -> subprocess.Popen:
    """The SQL Server stand-in (TDS server) over ``db`` on ``port`` (the benchmarks' source)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flux_devstack.tds",
            "--port",
            str(port),
            "--db",
            str(db),
            "--users",
            str(users),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_one(engine: str, out: Path) -> dict:
    """Runs in a child process: one export, returns rows and this process tree's peak RSS."""
    from airflow.providers.microsoft.mssql.hooks.mssql import MsSqlHook

    from flux_provider.formats import export_file as fmt
    from flux_provider.hooks.bcp import BcpHook
    from flux_provider.hooks.dbapi_export import DbApiExportEngine, describe

    hook = MsSqlHook(mssql_conn_id="bench")
    start = time.perf_counter()
    if engine == "stock_get_df":
        df = hook.get_df(QUERY, df_type="pandas")
        df.to_csv(out, index=False)
        rows = len(df)
    else:
        columns = describe(hook, QUERY)
        query = fmt.export_query(columns, query=QUERY)
        if engine == "freebcp":
            rows = (
                BcpHook("bench", batch_size=100_000, log_every=3600)
                .export(
                    query,
                    str(out),
                    field_terminator=fmt.DEFAULT_FIELD_TERMINATOR,
                    row_terminator=fmt.DEFAULT_ROW_TERMINATOR,
                )
                .rows
            )
        else:
            rows = DbApiExportEngine(hook, fetch_size=10_000, log_every=3600).export(
                query,
                str(out),
                columns,
                field_terminator=fmt.DEFAULT_FIELD_TERMINATOR,
                row_terminator=fmt.DEFAULT_ROW_TERMINATOR,
            )
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"engine": engine, "rows": rows, "seconds": seconds, "bytes": out.stat().st_size, "python_rss_mb": own}


def run_measured(cmd: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd``; sample the RSS of its whole process tree (Python + bcp child) every 20 ms."""
    import psutil

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, root = 0, psutil.Process(proc.pid)
    while proc.poll() is None:
        total = 0
        try:
            for member in [root, *root.children(recursive=True)]:
                total += member.memory_info().rss
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.02)
    stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), peak / 2**20


def chart(results: list[dict], path: Path) -> None:
    from plot import panels

    sizes = sorted({r["rows"] for r in results})
    groups = [f"{n:,} rows" for n in sizes]

    def series(metric):
        return {
            e: [next(r[metric] for r in results if r["rows"] == n and r["engine"] == e) for n in sizes] for e in ENGINES
        }

    panels(
        path,
        [
            ("export wall time", groups, series("seconds"), "seconds"),
            ("peak RSS of the export process tree", groups, series("peak_rss_mb"), "MB"),
        ],
    )


def bench_login(work: Path, port: int) -> tuple[Path, str]:
    """The stand-in's users file (one login, ``bench``, a fresh password) and the Airflow connection to it."""
    users, password = work / "users.json", "bench-" + os.urandom(6).hex()
    users.write_text(json.dumps({"bench": password}))
    connection = {
        "conn_type": "mssql",
        "host": "127.0.0.1",
        "port": port,
        "schema": "flux",
        "login": "bench",
        "password": password,
    }
    return users, json.dumps(connection)


def export_measured(engine: str, work: Path, env: dict) -> dict:
    """One export with ``engine`` in a fresh process: its result, with the process tree's peak RSS."""
    out = work / f"{engine}.out"
    done, tree_peak = run_measured([sys.executable, __file__, "--run-one", engine, "--out", str(out)], env)
    if done.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = max(tree_peak, result["python_rss_mb"])
    print(f"  {engine:<13} {result['seconds']:7.1f}s  peak RSS {result['peak_rss_mb']:7.0f} MB", flush=True)
    out.unlink()
    return result


def report(results: list[dict]) -> None:
    """The table: each engine against the stock path at the same size."""
    print()
    print(
        f"{'rows':>10} {'engine':<13} {'seconds':>8} {'rows/s':>9} {'file MB':>8} {'peak RSS MB':>12}"
        f" {'time vs stock':>14} {'RSS vs stock':>13}"
    )
    for r in results:
        stock = next(s for s in results if s["rows"] == r["rows"] and s["engine"] == "stock_get_df")
        print(
            f"{r['rows']:>10,} {r['engine']:<13} {r['seconds']:>8.1f} {r['rows'] / r['seconds']:>9,.0f} "
            f"{r['bytes'] / 1e6:>8.0f} {r['peak_rss_mb']:>12.0f} "
            f"{r['seconds'] / stock['seconds']:>13.2f}x {r['peak_rss_mb'] / stock['peak_rss_mb']:>12.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="1000000,5000000")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        print(json.dumps(run_one(args.run_one, Path(args.out))))
        return

    RESULTS.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="flux-bench-"))
    port = free_port()
    users, connection = bench_login(work, port)
    env = dict(os.environ, AIRFLOW_CONN_BENCH=connection, AIRFLOW_HOME=str(work / "airflow"))
    results = []
    try:
        for rows in [int(r) for r in args.rows.split(",")]:
            db = work / "source.sqlite"
            t = time.perf_counter()
            generate(db, rows)
            print(f"generated {rows:,} rows in {time.perf_counter() - t:.1f}s", flush=True)
            server = stand_in(db, port, users)
            try:
                time.sleep(1.5)
                results += [export_measured(engine, work, env) for engine in ENGINES]
            finally:
                server.terminate()
                server.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the source database and export files
    report(results)
    (RESULTS / "export.json").write_text(json.dumps(results, indent=2))
    chart(results, RESULTS / "export.png")
    print(f"\nwrote {RESULTS / 'export.json'} and {RESULTS / 'export.png'}")


if __name__ == "__main__":
    main()
