"""A generated fleet of data sets run once under the real scheduler, then the dashboard opened over it.

Used by ``fleet_bench.py`` (``--run-sizes``), which parses the same fleet. The benchmarks' stack
(``.devstack-bench``) has a bundle ``flux-bench-fleet`` whose one DAG file builds a DAG for every spec in its
``specs/`` folder; the fleet is written there: N copies of the sample ``titles`` dimension (200 rows of
``dbo.catalog_titles``), each with its own S3 location, staging and target table in Hive and its own pool;
every tenth is split in four key ranges.

* **Fleet run**: all N DAGs triggered through the REST API at once; the time from the first trigger to the
  end of the last run (Airflow's own end dates), runs per minute, and every run must succeed with its
  target holding the 200 rows (read back through HiveServer2).
* **Dashboard**: ``/flux/`` in headless Chromium, logged in: the browser's first contentful paint, and the
  time until the overview table shows its rows.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLEET = HERE.parent / ".devstack-bench" / "fleet"
TEMPLATE = HERE.parent / "dags" / "specs" / "titles.xml"
ROWS = 200  # dbo.catalog_titles of the sample data


def name(i: int) -> str:
    return f"fleet_{i:03d}"


def fleet_specs(size: int, *, scheduled: bool = True) -> dict[str, str]:
    """The sample ``titles`` data set ``size`` times, each with its own S3 location, staging and target table
    and pool; every tenth split in four key ranges. ``scheduled=False``: run only when triggered."""
    text = TEMPLATE.read_text()
    specs = {}
    for n in range(size):
        spec = text.replace('name="titles"', f'name="{name(n)}"').replace("media/titles", f"media/{name(n)}")
        spec = spec.replace('"titles_staging"', f'"{name(n)}_staging"').replace(
            'targetTable="titles"', f'targetTable="{name(n)}"'
        )
        spec = spec.replace('"titles_latest"', f'"{name(n)}_latest"')
        if n % 10 == 0:
            spec = spec.replace(
                'table="catalog_titles">', 'table="catalog_titles">\n    <split column="title_id" parts="4"/>'
            )
        if not scheduled:
            spec = spec.replace("<cron>0 2 * * *</cron>", "<preset>none</preset>")
        specs[name(n)] = spec
    return specs


def write_fleet(size: int) -> None:
    """The bundle's specs are exactly the first ``size`` data sets, triggered only by hand."""
    folder = FLEET / "specs"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f"{n}.xml": text for n, text in fleet_specs(size, scheduled=False).items()}
    for old in folder.glob("*.xml"):
        if old.name not in wanted:
            old.unlink()
    for file, text in wanted.items():
        path = folder / file
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def prepare_source(env: dict) -> None:
    from flux_devstack import sample_data

    sample_data.generate(Path(env["FLUX_MSSQL_DB"]), ROWS)


def wait_parsed(client, size: int, timeout: float = 900.0) -> float:
    """Seconds until the DAG processor has made exactly the fleet's DAGs (those of a larger fleet gone)."""
    started = time.monotonic()
    while True:
        listed = client.request("GET", "/dags", params={"dag_id_pattern": "flux_fleet_", "limit": 1}).json()
        if listed["total_entries"] == size:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{listed['total_entries']} fleet DAGs parsed of {size} after {timeout:.0f}s")
        time.sleep(2)


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_fleet(env: dict, client, size: int) -> dict:
    """Trigger every DAG of the fleet at once and wait for all: wall time, runs/min, and the targets' rows."""
    write_fleet(size)
    subprocess.run(  # the fleet's pools as their specs say
        [sys.executable, "-m", "flux_provider.specs", "pools", "sync", "--reset", str(FLEET / "specs")],
        env={**os.environ, "AIRFLOW_HOME": env["AIRFLOW_HOME"]},
        check=True,
        capture_output=True,
    )
    parsed_s = wait_parsed(client, size)
    started = dt.datetime.now(dt.timezone.utc)
    runs = {name(i): client.trigger(f"flux_{name(i)}") for i in range(size)}
    results = {ds: client.wait_for_run(f"flux_{ds}", run_id, timeout=3600) for ds, run_id in runs.items()}
    failed = sorted(ds for ds, r in results.items() if r.state != "success")
    ends = [
        _when(client.request("GET", f"/dags/flux_{ds}/dagRuns/{run_id}").json()["end_date"])
        for ds, run_id in runs.items()
    ]
    wall = (max(ends) - started).total_seconds()
    short = [ds for ds, rows in target_rows(size).items() if rows != ROWS]
    if failed or short:
        raise RuntimeError(f"fleet of {size}: failed runs {failed[:5]}, targets without {ROWS} rows {short[:5]}")
    return {"parsed_s": parsed_s, "fleet_run_s": wall, "runs_per_min": size / (wall / 60)}


def target_rows(size: int) -> dict[str, int]:
    from airflow.providers.apache.hive.hooks.hive import HiveServer2Hook

    hook = HiveServer2Hook(hiveserver2_conn_id="hiveserver2_default")
    counts = {}
    for first in range(0, size, 50):  # one statement per fifty tables
        union = "\nUNION ALL ".join(
            f"SELECT '{name(i)}', COUNT(*) FROM media.{name(i)}" for i in range(first, min(size, first + 50))
        )
        counts.update({ds: int(n) for ds, n in hook.get_records(union)})
    return counts


def dashboard_paint(env: dict, size: int) -> dict:
    """Open ``/flux/`` in headless Chromium: first contentful paint and the overview table's rows (ms)."""
    import httpx
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    token = httpx.post(
        env["FLUX_AIRFLOW_URL"] + "/auth/token",
        json={"username": env["FLUX_AIRFLOW_USER"], "password": env["FLUX_AIRFLOW_PASSWORD"]},
    ).json()["access_token"]
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1440,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(env["FLUX_AIRFLOW_URL"] + "/api/v2/version")
        driver.add_cookie({"name": "_token", "value": token, "path": "/"})
        best: dict | None = None
        for _ in range(3):  # the best of three loads: the machine is shared
            driver.get(env["FLUX_AIRFLOW_URL"] + "/flux/")
            deadline = time.monotonic() + 120
            while True:
                shown = driver.execute_script(
                    "const n = document.querySelectorAll('#table tr.ds').length;"
                    "return n ? [n, performance.now()] : null;"
                )
                if shown:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the dashboard showed no data set within 120 s")
                time.sleep(0.02)
            paint = driver.execute_script(
                "const e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : null;"
            )
            load = {"first_paint_ms": paint, "table_ms": shown[1], "rows_shown": shown[0]}
            if best is None or load["table_ms"] < best["table_ms"]:
                best = load
        return best
    finally:
        driver.quit()
