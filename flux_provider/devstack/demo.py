"""``make demo``: the sample media bundle through the local stack's real scheduler, then a report.

1. loads the deterministic sample source (``--rows`` viewing sessions) into the
   SQL Server stand-in;
2. unpauses the four data-set DAGs: the scheduler starts the dimensions'
   (titles, subscribers) run for their latest cron tick (a later demo clears
   that run so it runs again); the facts (viewing_sessions, ad_impressions)
   are *not* triggered by the demo: they run because the dimensions' Assets
   updated, as they would in production;
3. waits for all four runs, prints one row per data set (rows exported,
   uploaded, in staging, written to the target; partitions; duration; pool
   slots; reconciled?) and where to look.

Exit code 0 only if every run succeeded and reconciled (export rows = upload
rows = staging rows, which the transform also checked against the manifest).
Running it again is fine: snapshot partitions are overwritten, fact partitions
recomputed.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from flux_provider.devstack.airflow_api import AirflowClient
from flux_provider.devstack.sample_data import generate
from flux_provider.run_report import stage_rows

DIMENSIONS = ("titles", "subscribers")
FACTS = ("viewing_sessions", "ad_impressions")


@dataclass
class Outcome:
    dataset: str
    run_id: str | None
    state: str
    seconds: float
    exported: int | None = None
    uploaded: int | None = None
    staged: int | None = None
    target: int | None = None
    partitions: int | None = None
    slots: int | None = None

    @property
    def reconciled(self) -> bool:
        return self.state == "success" and self.exported is not None and self.exported == self.uploaded == self.staged


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _run_after(client: AirflowClient, dag_id: str, since: dt.datetime, timeout: float) -> dict:
    """The first run of ``dag_id`` created after ``since`` (asset-triggered runs are found this way)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = client.request(
            "GET", f"/dags/{dag_id}/dagRuns", params={"run_after_gte": _iso(since), "order_by": "run_after"}
        ).json()["dag_runs"]
        if runs:
            return runs[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id} did not start within {timeout:.0f}s after its upstream data sets")
        time.sleep(2)


def _latest_tick(client: AirflowClient, dag_id: str, now: dt.datetime) -> dt.datetime:
    from croniter import croniter

    cron = client.request("GET", f"/dags/{dag_id}/details").json()["timetable_summary"]
    return croniter(cron, now).get_prev(dt.datetime)


def _scheduled_run(client: AirflowClient, dag_id: str, now: dt.datetime) -> dict:
    """The scheduler's run for the latest cron tick: created on unpause; cleared (run again) if it is done."""
    logical = _iso(_latest_tick(client, dag_id, now))
    deadline = time.monotonic() + 120
    while True:
        runs = client.request(
            "GET", f"/dags/{dag_id}/dagRuns", params={"logical_date_gte": logical, "logical_date_lte": logical}
        ).json()
        if runs["dag_runs"]:
            run = runs["dag_runs"][0]
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the scheduler did not create the {logical} run of {dag_id}")
        time.sleep(2)
    if run["state"] in ("success", "failed"):
        client.request("POST", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/clear", json={"dry_run": False})
        print(f"{dag_id}: cleared its {logical} run to run it again")
    else:
        print(f"{dag_id}: the scheduler started its {logical} run")
    return run


def _outcome(client: AirflowClient, dataset: str, dag_id: str, run: dict) -> Outcome:
    result = client.wait_for_run(dag_id, run["dag_run_id"], timeout=900)
    out = Outcome(dataset, run["dag_run_id"], result.state, result.duration)
    rows = stage_rows(lambda task_id: client.xcom(dag_id, run["dag_run_id"], task_id))
    out.exported, out.uploaded, out.staged = rows["exported"], rows["uploaded"], rows["staged"]
    out.target, out.partitions = rows["target"], rows["partitions"]
    final = client.request("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}").json()
    if final.get("start_date") and final.get("end_date"):
        out.seconds = (
            dt.datetime.fromisoformat(final["end_date"]) - dt.datetime.fromisoformat(final["start_date"])
        ).total_seconds()
    pool = f"flux_{dataset}"
    try:
        out.slots = client.request("GET", f"/pools/{pool}").json()["slots"]
    except Exception:  # reported as unknown
        out.slots = None
    return out


def run_demo(env: dict[str, str], rows: int, *, dags_prefix: str = "flux_", timeout: float = 900) -> list[Outcome]:
    counts = generate(Path(env["FLUX_MSSQL_DB"]), rows)
    print("sample source: " + ", ".join(f"dbo.{k} {v} rows" for k, v in counts.items()))
    client = AirflowClient(env["FLUX_AIRFLOW_URL"], env["FLUX_AIRFLOW_USER"], env["FLUX_AIRFLOW_PASSWORD"])
    for name in DIMENSIONS + FACTS:
        client.wait_for_dag(dags_prefix + name)
        client.request("PATCH", f"/dags/{dags_prefix}{name}", json={"is_paused": False})
    started = dt.datetime.now(dt.timezone.utc)
    runs = {name: _scheduled_run(client, dags_prefix + name, started) for name in DIMENSIONS}
    outcomes = [_outcome(client, name, dags_prefix + name, runs[name]) for name in DIMENSIONS]
    for name in FACTS:
        if any(o.state != "success" for o in outcomes[:2]):
            outcomes.append(Outcome(name, None, "not started (upstream failed)", 0))
            continue
        run = _run_after(client, dags_prefix + name, started, timeout=120)
        print(f"{dags_prefix}{name} started by its upstream Assets ({run['dag_run_id']})")
        outcomes.append(_outcome(client, name, dags_prefix + name, run))
    return outcomes


def report(outcomes: list[Outcome], env: dict[str, str]) -> bool:
    def cell(value) -> str:
        return "-" if value is None else str(value)

    header = (
        f"{'DATA SET':<18}{'STATUS':<10}{'EXPORTED':>10}{'UPLOADED':>10}{'STAGED':>10}{'TARGET':>8}"
        f"{'PARTS':>6}{'SECONDS':>9}{'SLOTS':>6}  RECONCILED"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for o in outcomes:
        print(
            f"{o.dataset:<18}{o.state[:9]:<10}{cell(o.exported):>10}{cell(o.uploaded):>10}{cell(o.staged):>10}"
            f"{cell(o.target):>8}{cell(o.partitions):>6}{o.seconds:>9.1f}{cell(o.slots):>6}  "
            f"{'yes' if o.reconciled else 'NO'}"
        )
    ok = all(o.reconciled for o in outcomes)
    print(f"\n{'every data set ran and reconciled' if ok else 'SOME DATA SETS FAILED OR DID NOT RECONCILE'}")
    print(
        f"Airflow UI: {env['FLUX_AIRFLOW_URL']}  (user {env['FLUX_AIRFLOW_USER']}; the password is in "
        f"{env.get('FLUX_DEVSTACK_DIR', '.devstack')}/airflow/passwords.json, or `make env`)"
    )
    print(
        "Hive: tables media.titles, media.subscribers, media.viewing_daily, media.ad_revenue_daily and their "
        "*_latest views, via the hiveserver2_default connection"
    )
    return ok
