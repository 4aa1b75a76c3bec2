"""A fleet of data sets on one Airflow: what each DAG file costs to parse, flux vs hand-written stock DAGs, and
what one throttle-controller period costs, for 50, 200 and 300 generated data sets (a tenth of them split).

    .venv/bin/python benchmarks/fleet_bench.py [--sizes 50 200 300] [--repeat 3]

**Parse cost.** Airflow's DAG processor forks a child per file from a parent that has imported Airflow, loaded
the plugins and pre-imported the ``airflow.*`` modules the file names (``parsing_pre_import_modules``, on by
default), and the child parses the file: whatever else the file imports is paid by every file at every parse
(every 30 s by default). The benchmark does the same: a parent imports ``airflow.sdk`` and Airflow's models and
loads the plugins (flux's, when the provider is installed), pre-imports each file's ``airflow.*`` modules (the
stock operators' modules, for a stock file) and forks one child per file, and the children's CPU time (user +
system, from ``RUSAGE_CHILDREN``) is summed per loop over all files. The loops alternate flux and stock. Both fleets
describe the same data sets with the same tasks and Assets:

* flux: ``specs/<name>.xml`` plus a two-line DAG file (``dag_for(__file__)``) per data set;
* stock: one hand-written DAG file per data set: ``SqlToS3Operator -> S3ToHiveOperator -> HiveOperator``
  (transform) ``-> HiveOperator`` (partition refresh), in the data set's pool, on its cron, with an ``s3://``
  Asset as the last task's outlet.

The loop time is the CPU of one loop divided by the processor's two parsing processes (``[dag_processor]
parsing_processes`` = 2): under the 30 s interval, the processor keeps its interval.

**The real DAG processor.** At the largest size (``--processor-at``), ``airflow dag-processor`` itself parses
each fleet, with its own metadata database on PostgreSQL and ``[dag_processor] parsing_processes`` = 2: once
with ``-n 1`` (the first parse serializes every DAG) and once with ``-n 3``; with ``min_file_process_interval``
set to 0 a loop starts when the last one ends, so the two later loops' wall time over two is the time the
processor needs to parse every file once. Below 30 s, it keeps its default interval. The run fails unless
every file gives its DAG and none is an import error.

**On the stack** (``--run-sizes``, see ``fleet_run.py``): each fleet run once under the real scheduler, with
runs per minute, then the dashboard's first paint over it; before them, the per-run cost of a 200-row data set
(``flux_bench_e2e``) against the stock chain of ``e2e_bench.py`` on the same table, alternated.

**Controller.** ``controller_bench.measure``: one period over N throttled data sets with a week of tries each.

Writes ``benchmarks/results/fleet_bench.json`` and ``fleet_bench.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PARSING_PROCESSES = 2
INTERVAL = 30.0

FLUX_DAG = '''"""The data set {name}, built from specs/{name}.xml by flux_provider's DAG factory."""

from airflow.sdk import DAG

from flux_provider.specs.factory import dag_for

dag: DAG = dag_for(__file__)
'''

STOCK_DAG = '''"""The data set {name}, hand-written with the stock operators (the same tasks and Asset as flux's)."""

import pendulum
from airflow.providers.amazon.aws.transfers.sql_to_s3 import SqlToS3Operator
from airflow.providers.apache.hive.operators.hive import HiveOperator
from airflow.providers.apache.hive.transfers.s3_to_hive import S3ToHiveOperator
from airflow.sdk import DAG, Asset

FIELDS = {{"title_id": "INT", "title": "STRING", "genre": "STRING", "runtime_minutes": "INT", "released": "DATE",
          "is_original": "BOOLEAN"}}
PUBLISHED = Asset(name="stock.{name}", uri="s3://flux/media/{name}/_published.json", group="stock")

with DAG(
    dag_id="stock_{name}",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["stock", "owner:content-data"],
    default_args={{"owner": "content-data", "pool": "stock_{name}", "retries": 3}},
) as dag:
    export = SqlToS3Operator(
        task_id="{export}",
        query="SELECT * FROM dbo.catalog_{name}",
        sql_conn_id="mssql_default",
        aws_conn_id="aws_default",
        s3_bucket="flux",
        s3_key="media/{name}/{{{{ ds }}}}/data.csv",
        replace=True,
        file_format="csv",
        pd_kwargs={{"header": False, "index": False}},
    )
    stage = S3ToHiveOperator(
        task_id="stage",
        s3_key="s3://flux/media/{name}/{{{{ ds }}}}/data.csv",
        field_dict=FIELDS,
        hive_table="media.{name}_staging",
        delimiter=",",
        create=True,
        recreate=True,
        aws_conn_id="aws_default",
    )
    transform = HiveOperator(
        task_id="transform",
        hql="INSERT OVERWRITE TABLE media.{name} PARTITION (snapshot_day='{{{{ ds }}}}') "
        "SELECT title_id, title, genre, runtime_minutes, released, is_original FROM media.{name}_staging",
    )
    refresh = HiveOperator(
        task_id="refresh",
        hql="MSCK REPAIR TABLE media.{name}; CREATE OR REPLACE VIEW media.{name}_latest AS "
        "SELECT * FROM media.{name} WHERE snapshot_day = '{{{{ ds }}}}'",
        outlets=[PUBLISHED],
    )
    export >> stage >> transform >> refresh
'''


def flux_fleet(folder: Path, size: int) -> list[Path]:
    from benchmarks.fleet_run import fleet_specs

    (folder / "specs").mkdir(parents=True)
    files = []
    for name, spec in fleet_specs(size).items():
        (folder / "specs" / f"{name}.xml").write_text(spec)
        path = folder / f"{name}.py"
        path.write_text(FLUX_DAG.format(name=name))
        files.append(path)
    return files


def stock_fleet(folder: Path, size: int) -> list[Path]:
    folder.mkdir(parents=True)
    files = []
    for n in range(size):
        name = f"fleet_{n:03d}"
        path = folder / f"{name}.py"
        path.write_text(STOCK_DAG.format(name=name, export="export" if n % 10 else "export_parts"))
        files.append(path)
    return files


def parse_loop(files: list[Path]) -> dict:
    """One DAG-processor loop over ``files``: before forking a file's child, the parent imports the ``airflow.*``
    modules the file names (``[dag_processor] parsing_pre_import_modules``, on by default: Airflow's own
    ``iter_airflow_imports``), as the real processor does; the children's CPU seconds."""
    import importlib
    import runpy

    from airflow.utils.file import iter_airflow_imports

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    failures = []
    for path in files:
        for module in iter_airflow_imports(str(path)):
            importlib.import_module(module)
        pid = os.fork()
        if pid == 0:  # the child parses one file, as the processor's child does
            code = 0
            try:
                namespace = runpy.run_path(str(path))
                if not any(type(v).__name__ == "DAG" for v in namespace.values()):
                    code = 3
            except BaseException:  # noqa: BLE001 - reported to the parent by exit code
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            failures.append(path.name)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if failures:
        raise RuntimeError(f"{len(failures)} files did not build a DAG, e.g. {failures[:3]}")
    return {"files": len(files), "cpu_s": cpu, "per_file_s": cpu / len(files)}


def processor_loop(folder: Path, size: int, kind: str, home: Path) -> dict:
    """``airflow dag-processor`` over ``folder``: wall and CPU seconds of one loop over every file, once the
    DAGs are serialized (see the module's docstring)."""
    from sqlalchemy import create_engine, text

    from benchmarks.controller_bench import fresh_database

    url = fresh_database(f"flux_bench_processor_{kind}_{size}")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home / f"processor_{kind}"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "0",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": str(PARSING_PROCESSES),
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "300",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    measured = {}
    for runs in (1, 3):
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        done = subprocess.run([airflow, "dag-processor", "-n", str(runs)], env=env, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"airflow dag-processor -n {runs} over {folder} failed: {done.stderr[-2000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        measured[runs] = (time.monotonic() - started, cpu)
    engine = create_engine(url)
    with engine.connect() as conn:
        dags = conn.execute(text("SELECT count(*) FROM dag WHERE is_stale = false")).scalar()
        errors = conn.execute(text("SELECT count(*) FROM import_error")).scalar()
    engine.dispose()
    if dags != size or errors:
        raise RuntimeError(f"the processor over {folder} made {dags} DAGs of {size} with {errors} import errors")
    return {
        "loop_s": (measured[3][0] - measured[1][0]) / 2,
        "loop_cpu_s": (measured[3][1] - measured[1][1]) / 2,
    }


def run_on_stack(sizes: list[int], repeat: int = 3) -> tuple[dict, dict[int, dict]]:
    """On the benchmarks' stack: each fleet size run once, then the dashboard over it (``fleet_run``), and the
    per-run cost of a 200-row data set, flux (``flux_bench_e2e``) against the stock chain, alternated."""
    import statistics

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from adaptive_bench import bring_up
    from e2e_bench import one_run, prepare_source, prepare_stock

    from benchmarks import fleet_run

    _, env, client = bring_up()
    rows = 200
    prepare_source(env, rows)
    prepare_stock(env)
    seconds: dict[str, list[float]] = {"flux": [], "stock": []}
    for round_ in range(repeat):
        for chain in ("flux", "stock") if round_ % 2 == 0 else ("stock", "flux"):
            run = one_run(client, chain, rows)
            if run["state"] != "success" or run["rows_loaded"] != rows:
                raise RuntimeError(f"the {chain} chain's {rows}-row run: {run['state']}, {run['rows_loaded']} rows")
            seconds[chain].append(run["seconds"])
    per_run = {
        "rows": rows,
        "repeat": repeat,
        "flux_s": statistics.median(seconds["flux"]),
        "stock_s": statistics.median(seconds["stock"]),
    }
    fleet_run.prepare_source(env)
    fleets = {}
    for size in sizes:
        measured = fleet_run.run_fleet(env, client, size)
        measured.update(fleet_run.dashboard_paint(env, size))
        print(f"fleet of {size}: {measured}", flush=True)
        fleets[size] = measured
    return per_run, fleets


def burst_main(size: int, pairs: int, loads: list[bool]) -> None:
    """The burst benchmark (``fleet_burst.py``): a table, ``fleet_burst.json`` and ``fleet_burst.png``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from adaptive_bench import bring_up

    from benchmarks import fleet_burst

    _, env, client = bring_up()
    rows = fleet_burst.run(env, client, size, pairs, loads)
    print(
        f"{'side':>5} {'load':>6} {'ok':>7} {'first s':>8} {'median s':>9} {'last s':>7} {'tries':>6} "
        f"{'failed':>7} {'lost':>5} {'given':>6} {'retries':>8} {'ctl p50':>8} {'ctl p95':>8} {'health':>7}"
    )
    for r in rows:
        print(
            f"{r['side']:>5} {'on' if r['load'] else 'off':>6} {r['succeeded']:>3}/{r['runs']:<3} "
            f"{r['first_landed_s']:>8.0f} {r['median_landed_s']:>9.0f} {r['last_landed_s']:>7.0f} {r['tries']:>6} "
            f"{r['failed_tries']:>7} {r['lost_tries']:>5} {r['lost_given_back']:>6} {r['retries_spent']:>8} "
            f"{r['period_p50'] or float('nan'):>8.2f} {r['period_p95'] or float('nan'):>8.2f} "
            f"{r['health_ok']:>3}/{r['health_checks']:<3}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet_burst.json").write_text(json.dumps({"size": size, "bursts": rows}, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in rows:
        minutes = [t / 60 for t in r["landed_at"]]
        ax.step(
            minutes,
            range(1, len(minutes) + 1),
            where="post",
            label=f"{r['side']}, {'loaded' if r['load'] else 'quiet'}",
            linestyle="-" if r["side"] == "new" else "--",
        )
    ax.set_xlabel("minutes after the burst")
    ax.set_ylabel("runs landed")
    ax.set_title(f"{size} data sets due at once: runs landed over time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "fleet_burst.png", dpi=110)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 300])
    parser.add_argument("--repeat", type=int, default=3, help="loops per fleet (the best is reported)")
    parser.add_argument("--no-controller", action="store_true", help="skip the controller (needs PostgreSQL)")
    parser.add_argument(
        "--processor-at",
        type=int,
        nargs="*",
        default=[300],
        help="sizes at which the real `airflow dag-processor` parses both fleets (needs PostgreSQL); none: skip",
    )
    parser.add_argument(
        "--run-sizes",
        type=int,
        nargs="*",
        default=[50, 200, 300],
        help="fleets run once under the real scheduler on the benchmarks' stack, with the dashboard opened "
        "over them and the 200-row run against the stock chain; none: skip the stack",
    )
    parser.add_argument(
        "--burst",
        type=int,
        metavar="N",
        help="only the nightly burst: N small data sets at once, today's behaviour against the new one "
        "(fleet_burst.py)",
    )
    parser.add_argument("--pairs", type=int, default=1, help="with --burst: alternated pairs per load setting")
    parser.add_argument("--load", choices=("on", "off", "both"), default="both", help="with --burst: background load")
    return parser


def measure_size(size: int, args, home: Path) -> dict:
    """One fleet size: parse CPU of both fleets (best of the alternated loops), the real processor's loop and
    the controller's period where asked."""
    flux_files = flux_fleet(home / f"flux_{size}", size)
    stock_files = stock_fleet(home / f"stock_{size}", size)
    loops: dict[str, list[dict]] = {"flux": [], "stock": []}
    for round_ in range(args.repeat):  # alternated: the machine is shared
        for kind in ("flux", "stock") if round_ % 2 == 0 else ("stock", "flux"):
            loops[kind].append(parse_loop(flux_files if kind == "flux" else stock_files))
    flux, stock = (min(loops[k], key=lambda r: r["cpu_s"]) for k in ("flux", "stock"))
    row = {
        "datasets": size,
        "flux_parse_cpu_s": flux["cpu_s"],
        "stock_parse_cpu_s": stock["cpu_s"],
        "flux_per_file_s": flux["per_file_s"],
        "stock_per_file_s": stock["per_file_s"],
        "flux_loop_s": flux["cpu_s"] / PARSING_PROCESSES,
        "stock_loop_s": stock["cpu_s"] / PARSING_PROCESSES,
    }
    if size in args.processor_at:
        for kind, folder in (("flux", flux_files[0].parent), ("stock", stock_files[0].parent)):
            real = processor_loop(folder, size, kind, home)
            row[f"{kind}_processor_loop_s"] = real["loop_s"]
            row[f"{kind}_processor_cpu_s"] = real["loop_cpu_s"]
    if not args.no_controller:
        from benchmarks.controller_bench import measure

        period = measure(size)
        row["controller_first_s"], row["controller_steady_s"] = period["first_s"], period["steady_s"]
    return row


def report(rows: list[dict], per_run: dict) -> None:
    header = (
        f"{'data sets':>9} {'flux s/file':>11} {'stock s/file':>12} {'flux/stock':>10} "
        f"{'flux loop s':>11} {'stock loop s':>12} {'ctl first s':>11} {'ctl steady s':>12}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['datasets']:>9} {r['flux_per_file_s']:>11.3f} {r['stock_per_file_s']:>12.3f} "
            f"{r['flux_per_file_s'] / r['stock_per_file_s']:>10.2f} {r['flux_loop_s']:>11.1f} "
            f"{r['stock_loop_s']:>12.1f} {r.get('controller_first_s', float('nan')):>11.3f} "
            f"{r.get('controller_steady_s', float('nan')):>12.3f}"
        )
    for r in rows:
        if "fleet_run_s" in r:
            print(
                f"{r['datasets']} data sets run at once: {r['fleet_run_s']:.0f} s, {r['runs_per_min']:.1f} runs/min; "
                f"dashboard first paint {r['first_paint_ms']:.0f} ms, table of {r['rows_shown']} shown at "
                f"{r['table_ms']:.0f} ms"
            )
    if per_run:
        print(
            f"one run of a {per_run['rows']}-row data set (median of {per_run['repeat']}): flux "
            f"{per_run['flux_s']:.1f} s, stock chain {per_run['stock_s']:.1f} s: "
            f"{per_run['flux_s'] / per_run['stock_s']:.2f}x"
        )
    for r in rows:
        if "flux_processor_loop_s" in r:
            print(
                f"airflow dag-processor, {r['datasets']} files: flux {r['flux_processor_loop_s']:.1f} s a loop "
                f"({r['flux_processor_cpu_s']:.1f} CPU s), stock {r['stock_processor_loop_s']:.1f} s "
                f"({r['stock_processor_cpu_s']:.1f} CPU s)"
            )
    print(
        f"goals: flux/stock <= 1.00 per file; flux loop < {INTERVAL:.0f} s at 300; controller < 1 s a period; "
        "a 200-row run <= the stock chain's"
    )


def plot(rows: list[dict], controller: bool) -> None:
    try:
        from benchmarks.plot import panels
    except ImportError:
        return
    groups = [str(r["datasets"]) for r in rows]
    charts = [
        (
            "DAG-processor CPU per loop (s)",
            groups,
            {"flux": [r["flux_parse_cpu_s"] for r in rows], "stock": [r["stock_parse_cpu_s"] for r in rows]},
            "CPU s",
        )
    ]
    if controller:
        charts.append(
            (
                "controller period (s)",
                groups,
                {
                    "first after a start": [r["controller_first_s"] for r in rows],
                    "steady": [r["controller_steady_s"] for r in rows],
                },
                "s",
            )
        )
    panels(RESULTS / "fleet_bench.png", charts)


def main() -> None:
    args = parser().parse_args()
    if args.burst:
        burst_main(args.burst, args.pairs, {"on": [True], "off": [False], "both": [False, True]}[args.load])
        return
    home = Path(tempfile.mkdtemp(prefix="flux-fleet-bench-"))
    os.environ["AIRFLOW_HOME"] = str(home / "airflow")
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    import airflow.models  # noqa: F401 - what the processor's parent has imported before it forks
    import airflow.sdk  # noqa: F401
    from airflow import plugins_manager

    plugins_manager.ensure_plugins_loaded()
    try:
        rows = [measure_size(size, args, home) for size in args.sizes]
    finally:
        shutil.rmtree(home, ignore_errors=True)

    per_run, fleets = run_on_stack(args.run_sizes) if args.run_sizes else ({}, {})
    for r in rows:
        r.update(fleets.get(r["datasets"], {}))
    rows += [{"datasets": n, **m} for n, m in fleets.items() if n not in {r["datasets"] for r in rows}]
    report(rows, per_run)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet_bench.json").write_text(json.dumps({"fleets": rows, "per_run": per_run}, indent=2))
    plot(rows, controller=not args.no_controller)


if __name__ == "__main__":
    main()
