"""A nightly burst on the stack: many small data sets triggered at once, watched to the end, and measured.

Used by the burst test (``tests/integration/test_fleet_burst.py``) and ``benchmarks/fleet_bench.py --burst``.
Each data set reads 3-14 rows of ``dbo.burst_titles`` (:func:`prepare_source`) into a Hive table of its own (every third
with a day partition and a refresh), in a pool of its own. Everything measured is read from what Airflow and
the controller recorded (``dag_run``, ``task_instance`` and its history, ``flux_task_outcomes``,
``flux_lost_tries``, the controller's lease), and the scheduler's ``/health`` endpoint is polled meanwhile.

:class:`BackgroundLoad` is a fixed CPU load for the run: a bounded busy loop on each core (killed at the end,
and by its own deadline if the caller dies).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import bindparam, create_engine, text

SPEC = """<?xml version="1.0" encoding="UTF-8"?>
<dataset name="{name}">
  <description>A small data set of the burst ({rows} titles).</description>
  <owner>fleet</owner>
  <source>
    <query>SELECT title_id, title, genre FROM dbo.burst_titles WHERE title_id &lt;= {rows}</query>
  </source>
  <export engine="bcp" mode="streaming"/>
  <s3 location="s3://flux/burst/{name}"/>
  <hive database="burst" stagingTable="{name}_staging" targetTable="{name}" createDatabase="true">
    <column name="title_id" type="INT"/>
    <column name="title" type="STRING"/>
    <column name="genre" type="STRING"/>
{partition}    <transform>SELECT title_id, title, genre FROM {{{{ staging }}}}</transform>
    <expect rows="staging"/>
  </hive>
{refresh}  <schedule><preset>none</preset></schedule>
  <throttle initial="2" min="1" max="4"/>
</dataset>
"""
PARTITION = '    <partition name="day" type="STRING" value="{{ flux_day }}"/>\n'
REFRESH = '  <refresh latestView="{name}_latest"/>\n'


def prepare_source(env: dict) -> None:
    """``dbo.burst_titles`` (14 titles) in the stand-in SQL Server's database, left as it is if there."""
    import sqlite3

    with sqlite3.connect(env["FLUX_MSSQL_DB"], timeout=30) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS burst_titles (title_id INTEGER, title TEXT, genre TEXT)")
        if conn.execute("SELECT COUNT(*) FROM burst_titles").fetchone()[0] == 0:
            genres = ("drama", "comedy", "kids", None)
            conn.executemany(
                "INSERT INTO burst_titles VALUES (?, ?, ?)",
                [(n, f"Title {n}: \\tab\tand new\nline", genres[n % 4]) for n in range(1, 15)],
            )


def rows_of(n: int) -> int:
    return 3 + n % 12


def specs(prefix: str, size: int) -> dict[str, str]:
    """``name -> spec text`` of ``size`` small data sets named ``<prefix>_NNN``."""
    out = {}
    for n in range(size):
        name = f"{prefix}_{n:03d}"
        day = n % 3 == 0
        out[name] = SPEC.format(
            name=name,
            rows=rows_of(n),
            partition=PARTITION if day else "",
            refresh=REFRESH.format(name=name) if day else "",
        )
    return out


def write_specs(folder: Path, texts: dict[str, str]) -> None:
    """Write the specs (each checked first: a broken one would only be skipped by the DAG file)."""
    import tempfile

    from flux_provider.specs.parser import load_spec

    with tempfile.TemporaryDirectory() as scratch:
        for name, body in texts.items():
            (Path(scratch) / f"{name}.xml").write_text(body)
            load_spec(Path(scratch) / f"{name}.xml", check_queries=False)  # raises a SpecError with the fix
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in texts.items():
        path = folder / f"{name}.xml"
        if not path.exists() or path.read_text() != body:
            path.write_text(body)


def remove_specs(folder: Path, names) -> None:
    for name in names:
        (folder / f"{name}.xml").unlink(missing_ok=True)


def sync_pools(env: dict, folder: Path) -> None:
    """The data sets' pools and throttle rows, as ``flux-specs pools sync`` makes them."""
    subprocess.run(
        [sys.executable, "-m", "flux_provider.specs", "pools", "sync", str(folder)],
        env={**os.environ, "AIRFLOW_HOME": env["AIRFLOW_HOME"]},
        check=True,
        capture_output=True,
    )


def host_limit(env: dict, mode: str, reason: str) -> None:
    """Switch the stack's host limit (``adaptive`` or ``off``) as a person would, with the CLI."""
    subprocess.run(
        [sys.executable, "-m", "flux_provider.throttle", "host", mode, "--reason", reason],
        env={**os.environ, "AIRFLOW_HOME": env["AIRFLOW_HOME"]},
        check=True,
        capture_output=True,
    )


def wait_parsed(client, dag_ids: list[str], timeout: float = 900.0) -> float:
    """Seconds until every one of ``dag_ids`` is parsed (the DAG processor works through the bundle)."""
    started, wanted = time.monotonic(), set(dag_ids)
    prefix = os.path.commonprefix(dag_ids)
    while True:
        seen = set()
        for offset in range(0, len(wanted) + 100, 100):
            page = {"dag_id_pattern": prefix, "limit": 100, "offset": offset}
            seen |= {d["dag_id"] for d in client.request("GET", "/dags", params=page).json()["dags"]}
        if wanted <= seen:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{len(wanted - seen)} of {len(wanted)} burst DAGs not parsed after {timeout:.0f}s")
        time.sleep(3)


def trigger_all(client, dag_ids: list[str], tag: str) -> dict[str, str]:
    """Unpause and trigger every DAG (one run each), 16 at a time: ``dag_id -> run_id``."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        run_ids = list(pool.map(lambda d: client.trigger(d, run_id=f"burst__{tag}_{d}"), dag_ids))
    return dict(zip(dag_ids, run_ids))


class BackgroundLoad:
    """A busy loop on each core for at most ``seconds`` (a fixed load a shared machine might carry)."""

    def __init__(self, seconds: float = 3600.0, cores: int | None = None):
        self.seconds, self.cores = seconds, cores or os.cpu_count() or 1
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> BackgroundLoad:
        code = f"import time\nend = time.monotonic() + {self.seconds}\nwhile time.monotonic() < end:\n    pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.cores)]
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()


@dataclass
class Probe:
    """The scheduler's health and the controller's period, polled during the burst."""

    health_url: str | None
    engine: object
    every: float = 10.0
    health: list[bool] = field(default_factory=list)
    periods: list[float] = field(default_factory=list)
    host_limits: list[tuple[float, int | None, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Probe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        last_period = None
        while not self._stop.wait(self.every):
            if self.health_url:
                try:
                    self.health.append(httpx.get(self.health_url, timeout=10).status_code == 200)
                except httpx.HTTPError:
                    self.health.append(False)
            try:
                with self.engine.connect() as conn:
                    period = conn.execute(text("SELECT period_seconds FROM flux_lease")).scalar()
                    limit = conn.execute(text("SELECT value, pinned, mode FROM flux_host")).first()
            except Exception:  # the tables come with the controller's first period
                continue
            if period is not None and period != last_period:
                self.periods.append(float(period))
                last_period = period
            if limit is not None:
                slots = limit[1] if limit[1] is not None else limit[0]
                self.host_limits.append((time.monotonic() - self._started, slots, limit[2]))


@dataclass
class BurstReport:
    runs: int
    succeeded: int
    first_landed_s: float | None
    median_landed_s: float | None
    last_landed_s: float | None
    last_export_start_s: float | None
    tries: int
    failed_tries: int
    lost_tries: int
    lost_given_back: int
    rule_retries_on_lost: int
    retries_spent: int
    landed_at: list[float]
    period_p50: float | None
    period_p95: float | None
    health_ok: int
    health_checks: int
    host_limits: list

    def as_dict(self) -> dict:
        return asdict(self)


def _sql(statement: str):
    return text(statement).bindparams(bindparam("ids", expanding=True))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def wait_done(engine, runs: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = len(runs)
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            pending = conn.execute(
                _sql("SELECT COUNT(*) FROM dag_run WHERE run_id IN :ids AND state NOT IN ('success', 'failed')"),
                {"ids": list(runs.values())},
            ).scalar()
        if pending == 0:
            return
        time.sleep(5)
    raise RuntimeError(f"{pending} of {len(runs)} burst runs still not done after {timeout:.0f}s")


def report(engine, runs: dict[str, str], started: dt.datetime, probe: Probe | None = None) -> BurstReport:
    """What the burst did, from Airflow's and the controller's tables (seconds counted from ``started``)."""
    ids = list(runs.values())
    with engine.connect() as conn:
        dag_runs = conn.execute(
            _sql("SELECT run_id, state, end_date FROM dag_run WHERE run_id IN :ids"), {"ids": ids}
        ).all()
        tries = conn.execute(
            _sql(
                "SELECT dag_id, task_id, map_index, try_number, state, start_date, max_tries FROM task_instance "
                "WHERE run_id IN :ids UNION ALL SELECT dag_id, task_id, map_index, try_number, state, "
                "start_date, max_tries FROM task_instance_history WHERE run_id IN :ids"
            ),
            {"ids": ids},
        ).all()
        lost = conn.execute(_sql("SELECT given_back FROM flux_lost_tries WHERE run_id IN :ids"), {"ids": ids}).all()
        lost_outcomes = conn.execute(
            _sql("SELECT COUNT(*) FROM flux_task_outcomes WHERE run_id IN :ids AND error_class = 'lost'"),
            {"ids": ids},
        ).scalar()

    def since(moment) -> float | None:
        if moment is None:
            return None
        return (moment.replace(tzinfo=moment.tzinfo or dt.timezone.utc) - started).total_seconds()

    landed = sorted(since(r.end_date) for r in dag_runs if r.state == "success" and r.end_date is not None)
    exports = [since(t.start_date) for t in tries if t.task_id == "export_upload" and t.start_date is not None]
    current = {}
    for t in tries:  # the newest try of each task instance
        key = (t.dag_id, t.task_id, t.map_index)
        if key not in current or t.try_number > current[key].try_number:
            current[key] = t
    given = sum(1 for (g,) in lost if g)
    periods = probe.periods if probe else []
    return BurstReport(
        runs=len(runs),
        succeeded=sum(1 for r in dag_runs if r.state == "success"),
        first_landed_s=landed[0] if landed else None,
        median_landed_s=statistics.median(landed) if landed else None,
        last_landed_s=landed[-1] if landed else None,
        last_export_start_s=max(exports) if exports else None,
        tries=len({(t.dag_id, t.task_id, t.map_index, t.try_number) for t in tries}),
        failed_tries=len(
            {(t.dag_id, t.task_id, t.map_index, t.try_number) for t in tries if t.state in ("failed", "up_for_retry")}
        ),
        lost_tries=max(len(lost), int(lost_outcomes or 0)),
        lost_given_back=given,
        # a lost try that was not given back spent one of the rules' (and Airflow's) retries
        rule_retries_on_lost=max(len(lost), int(lost_outcomes or 0)) - given,
        retries_spent=sum(max(0, t.try_number - 1) for t in current.values()),
        landed_at=landed,
        period_p50=_percentile(periods, 0.5),
        period_p95=_percentile(periods, 0.95),
        health_ok=sum(probe.health) if probe else 0,
        health_checks=len(probe.health) if probe else 0,
        host_limits=probe.host_limits if probe else [],
    )


def run_burst(env: dict, client, dag_ids: list[str], tag: str, *, timeout: float = 3600.0) -> BurstReport:
    """Trigger ``dag_ids`` at once and wait for every run; the report of what happened."""
    engine = create_engine(env["FLUX_AIRFLOW_DB"])
    probe = Probe(env.get("FLUX_SCHEDULER_HEALTH_URL"), engine).start()
    started = dt.datetime.now(dt.timezone.utc)
    try:
        runs = trigger_all(client, dag_ids, tag)
        wait_done(engine, runs, timeout)
    finally:
        probe.stop()
    return report(engine, runs, started, probe)


__all__ = [
    "BackgroundLoad",
    "BurstReport",
    "prepare_source",
    "run_burst",
    "specs",
    "sync_pools",
    "wait_parsed",
    "write_specs",
]
