"""``make demo``: the sample media bundle through the local stack's real scheduler, then a report.

1. loads the deterministic sample source (``--rows`` viewing sessions) into the
   SQL Server stand-in;
2. unpauses the four data-set DAGs: the scheduler starts the dimensions'
   (titles, subscribers) run for their latest cron tick, each loading that
   day's partition (a later demo clears that run so it runs again); the facts
   (viewing_sessions, ad_impressions) are *not* triggered by the demo: each
   starts, for that day, once every dimension it waits for wrote the day (its
   Asset event for the partition), as it would in production. titles runs
   first: the demo shows viewing_sessions has no run for the day until
   subscribers has written it too, and prints when each dimension wrote the
   day and when the fact's run for it began;
3. waits for all four runs, prints one row per data set (rows exported,
   uploaded, in staging, written to the target; partitions; duration; pool
   slots; reconciled?) and where to look;
4. viewing_sessions is split (``<split column="session_id" parts="8"/>``) over a
   server of capacity 3 (``flux_capacity`` row ``*``, which the stand-in's views show
   as SQL Server's memory grants: each query on the fact holds it 6 s, up to 1.5 s
   more as its use grows; a 4th at once waits 4 s longer, a 5th is a deadlock victim
   after half its work). Its pool starts at 6 slots, above that capacity: the demo
   prints each part (rows, tries, when it ran) beside the pool's slots over the run
   as the throttle controller set them, and what made it stop: the server's state
   (the budget all four data sets share), the source's latency or its errors.

Exit code 0 only if every run succeeded and reconciled (export rows = upload
rows = staging rows, which the transform also checked against the manifest).
Running it again is fine: snapshot partitions are overwritten, fact partitions
recomputed.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from flux_devstack.airflow_api import AirflowClient
from flux_devstack.sample_data import generate
from flux_devstack.stack import password_command
from flux_devstack.tds.capacity import create_tables
from flux_provider.run_report import EXPORT_UPLOAD, stage_rows, stage_times

DIMENSIONS = ("titles", "subscribers")
FACTS = ("viewing_sessions", "ad_impressions")
#: The dimensions each fact waits for (its spec's <after>): the day's partition of each.
AFTER = {"viewing_sessions": ("titles", "subscribers"), "ad_impressions": ("subscribers",)}
#: The split fact's source table, its capacity in the stand-in (queries at full speed at once), the seconds
#: each query holds it, and the slots its pool starts the demo with (above the capacity).
SPLIT_FACT, SPLIT_CAPACITY, SPLIT_HOLD, SPLIT_START = "viewing_sessions", 3, 6.0, 6


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
    parts: list[dict] = field(default_factory=list)  # a split run: name, rows, tries, state, start, end
    slot_changes: list[dict] = field(default_factory=list)  # the pool's changes during the run
    partition: str | None = None  # the partition the run loaded (Airflow's partition key)
    created: dt.datetime | None = None  # when the scheduler created the run
    wrote: dt.datetime | None = None  # when the run's Asset event for its partition was recorded
    held: bool | None = None  # a fact: had no run for the day while one of its dimensions had not written it
    stages: list[dict] = field(default_factory=list)  # where the run's time went (run_report.stage_times)

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


def _clear_held(client: AirflowClient, dag_id: str, now: dt.datetime) -> None:
    """A held dimension's run of the day, if it ran already (the demo again on the same day): cleared while
    its DAG is paused, so its rewrite of the day is coming and the facts wait for it instead of joining the
    first dimension's rewrite with its old rows (``flux_provider.throttle.corrections``)."""
    logical = _iso(_latest_tick(client, dag_id, now))
    runs = client.request(
        "GET", f"/dags/{dag_id}/dagRuns", params={"run_after_gte": logical, "run_after_lte": logical}
    ).json()["dag_runs"]
    for run in runs:
        if run["state"] in ("success", "failed"):
            client.request("POST", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/clear", json={"dry_run": False})
            print(f"{dag_id}: cleared its {logical} run to run it again (held until the first dimension wrote)")


def _scheduled_run(client: AirflowClient, dag_id: str, now: dt.datetime) -> dict:
    """The scheduler's run for the latest cron tick (the day's partition): created on unpause; cleared (run
    again) if it is done."""
    logical = _iso(_latest_tick(client, dag_id, now))
    deadline = time.monotonic() + 120
    while True:
        runs = client.request(
            "GET", f"/dags/{dag_id}/dagRuns", params={"run_after_gte": logical, "run_after_lte": logical}
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
    out.partition, out.created = final.get("partition_key"), _moment(final.get("queued_at"))
    events = client.asset_events(dag_id, run["dag_run_id"])
    out.wrote = max((_moment(e["timestamp"]) for e in events if e.get("partition_key")), default=None)
    if final.get("start_date") and final.get("end_date"):
        out.seconds = (
            dt.datetime.fromisoformat(final["end_date"]) - dt.datetime.fromisoformat(final["start_date"])
        ).total_seconds()
        listed = client.request("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances?limit=100").json()
        out.stages = stage_times(final["start_date"], listed["task_instances"])
    pool = f"flux_{dataset}"
    try:
        out.slots = client.request("GET", f"/pools/{pool}").json()["slots"]
    except Exception:  # reported as unknown
        out.slots = None
    rows_of = {p["part"]: p["rows"] for p in rows["parts"]}
    if rows_of:
        tis = client.request(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances",
            params={"task_id_pattern": EXPORT_UPLOAD, "limit": 1000},
        ).json()["task_instances"]
        out.parts = [
            {
                "part": ti["rendered_map_index"],
                "rows": rows_of.get(ti["rendered_map_index"]),
                "tries": ti["try_number"],
                "state": ti["state"],
                "start": ti["start_date"],
                "end": ti["end_date"],
            }
            for ti in sorted(tis, key=lambda t: t["map_index"])
            if ti["task_id"] == EXPORT_UPLOAD
        ]
        events = client.plugin("GET", f"/flux/api/datasets/{dataset}/events").json()["events"]
        begin, end = _moment(final.get("start_date")), _moment(final.get("end_date"))
        out.slot_changes = [e for e in reversed(events) if begin and end and begin <= _moment(e["at"]) <= end]
    return out


def limit_capacity(db: Path, table: str, capacity: int, hold: float) -> None:
    """The stand-in server's capacity (:mod:`flux_devstack.tds.capacity`, the server-wide row its views show
    as memory grants), each query on ``table`` holding it ``hold`` seconds: latency grows with the load,
    victims do half their work before they fail."""
    with sqlite3.connect(db) as conn:
        create_tables(conn)
        conn.execute("DELETE FROM flux_capacity WHERE pattern = ?", (table,))  # an older demo's per-table row
        conn.execute(
            "INSERT OR REPLACE INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess, error_number, "
            "load_seconds, victim_after) VALUES ('*', ?, 4.0, 2, 1205, 1.5, 0.5)",
            (capacity,),
        )
        conn.execute("DELETE FROM flux_faults WHERE pattern = ?", (table,))
        conn.execute(
            "INSERT INTO flux_faults (pattern, error_number, remaining, delay_seconds) VALUES (?, NULL, -1, ?)",
            (table, hold),
        )


def controller_cuts(changes: list[dict]) -> list[dict]:
    """The limit changes in which the controller lowered the pool."""
    return [e for e in changes if e["actor"] == "controller" and e["old"] is not None and e["new"] < e["old"]]


def lowest(changes: list[dict]) -> int | None:
    """The fewest slots the controller set the pool to during a run (None: it changed nothing)."""
    return min((e["new"] for e in changes if e["actor"] == "controller"), default=None)


def stopped_by(changes: list[dict]) -> str | None:
    """What held the pool during a run: ``server`` (its share of its source's budget, sized from the server's
    state), else what made the controller cut it: ``latency`` or ``errors``; None when nothing did."""
    if any(e["actor"] == "controller" and e["reason"].startswith("source ") for e in changes):
        return "server"
    cuts = controller_cuts(changes)
    if not cuts:
        return None
    return "latency" if any(e["reason"].startswith("latency") for e in cuts) else "errors"


def run_demo(env: dict[str, str], rows: int, *, dags_prefix: str = "flux_", timeout: float = 900) -> list[Outcome]:
    """The demo's runs; the server's capacity model is lifted afterwards (the stack keeps running for the user)."""
    counts = generate(Path(env["FLUX_MSSQL_DB"]), rows)
    print("sample source: " + ", ".join(f"dbo.{k} {v} rows" for k, v in counts.items()))
    limit_capacity(Path(env["FLUX_MSSQL_DB"]), SPLIT_FACT, SPLIT_CAPACITY, SPLIT_HOLD)
    try:
        return _runs(env, dags_prefix)
    finally:
        with sqlite3.connect(env["FLUX_MSSQL_DB"]) as conn:
            conn.execute("DELETE FROM flux_capacity WHERE pattern = '*'")
            conn.execute("DELETE FROM flux_faults WHERE pattern = ?", (SPLIT_FACT,))


def _runs(env: dict[str, str], dags_prefix: str) -> list[Outcome]:
    client = AirflowClient(env["FLUX_AIRFLOW_URL"], env["FLUX_AIRFLOW_USER"], env["FLUX_AIRFLOW_PASSWORD"])
    client.plugin(
        "POST",
        f"/flux/api/datasets/{SPLIT_FACT}/limit",
        json={"slots": SPLIT_START, "pin": False, "reason": "the demo starts it above the source's capacity"},
    )
    print(
        f"the server answers {SPLIT_CAPACITY} queries at once at full speed, each on dbo.{SPLIT_FACT} holding it "
        f"{SPLIT_HOLD:.0f} s (the stand-in's capacity model); its pool starts at {SPLIT_START} slots"
    )
    first, *later = DIMENSIONS  # titles writes its day first; the others are held until it has
    for name in DIMENSIONS + FACTS:
        client.wait_for_dag(dags_prefix + name)
        client.request("PATCH", f"/dags/{dags_prefix}{name}", json={"is_paused": name in later})
    started = dt.datetime.now(dt.timezone.utc)
    for name in later:
        _clear_held(client, dags_prefix + name, started)
    outcomes = [_outcome(client, first, dags_prefix + first, _scheduled_run(client, dags_prefix + first, started))]
    held = _held_facts(client, dags_prefix, outcomes[0], started)
    for name in later:
        client.request("PATCH", f"/dags/{dags_prefix}{name}", json={"is_paused": False})
        outcomes.append(_outcome(client, name, dags_prefix + name, _scheduled_run(client, dags_prefix + name, started)))
    for name in FACTS:
        if any(o.state != "success" for o in outcomes[:2]):
            outcomes.append(Outcome(name, None, "not started (upstream failed)", 0))
            continue
        run = _run_after(client, dags_prefix + name, started, timeout=120)
        print(
            f"{dags_prefix}{name} started for {run.get('partition_key')} by its upstream Assets ({run['dag_run_id']})"
        )
        outcomes.append(_outcome(client, name, dags_prefix + name, run))
        outcomes[-1].held = held.get(name)
    return outcomes


def _held_facts(client: AirflowClient, dags_prefix: str, wrote: Outcome, since: dt.datetime) -> dict[str, bool]:
    """With only ``wrote``'s dimension written for its day, each fact that also waits for another one has no
    run for that day: ``{fact: held}``, printed as it is seen."""
    held = {}
    for fact, upstream in AFTER.items():
        if wrote.dataset not in upstream or len(upstream) < 2:
            continue
        runs = client.request(
            "GET", f"/dags/{dags_prefix}{fact}/dagRuns", params={"run_after_gte": _iso(since)}
        ).json()["dag_runs"]
        held[fact] = not [r for r in runs if r.get("partition_key") == wrote.partition]
        waiting = ", ".join(u for u in upstream if u != wrote.dataset)
        print(
            f"{wrote.dataset} wrote {wrote.partition}: {dags_prefix}{fact} "
            + (f"has no run for it, it waits for {waiting} too" if held[fact] else "STARTED TOO EARLY")
        )
    return held


def _moment(text: str | None) -> dt.datetime | None:
    """An ISO time from Airflow's API or the flux API (naive ones are UTC)."""
    if not text:
        return None
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def waited_for_its_day(fact: Outcome, upstream: list[Outcome]) -> bool:
    """The fact's run is for the day its upstreams wrote, and began only after the last of them wrote it
    (and, where the demo looked, there was no run for it while one of them had not)."""
    wrote = [o.wrote for o in upstream]
    return (
        fact.held is not False
        and fact.partition is not None
        and all(o.partition == fact.partition for o in upstream)
        and None not in wrote
        and fact.created is not None
        and fact.created >= max(wrote)
    )


def _partitions_text(outcomes: list[Outcome], after: dict[str, tuple[str, ...]]) -> str:
    """When each dimension wrote its day, and when each fact's run for that day began."""
    by_name = {o.dataset: o for o in outcomes}
    lines = ["\npartitions: a fact's run for a day starts once every dimension it waits for wrote that day"]
    for o in outcomes:
        if o.dataset not in after and o.wrote:
            lines.append(f"  {o.dataset:<18} wrote {o.partition} at {o.wrote:%H:%M:%S}")
    for name, upstream in after.items():
        o = by_name.get(name)
        if o is None or o.created is None:
            continue
        ups = [by_name[u] for u in upstream if u in by_name]
        verdict = ("after both" if len(ups) > 1 else "after it") if waited_for_its_day(o, ups) else "TOO EARLY"
        lines.append(
            f"  {name:<18} run for {o.partition} created at {o.created:%H:%M:%S}, {verdict} ({', '.join(upstream)})"
        )
    return "\n".join(lines)


def _parts_table(o: Outcome) -> str:
    """Each part of a split run (when it ran, rows, tries) beside the pool's slots over the run."""
    starts = [_moment(p["start"]) for p in o.parts if p["start"]]
    zero = min(starts) if starts else None

    def offset(text: str | None) -> str:
        moment = _moment(text)
        if moment is None or zero is None:
            return "-"
        return f"{(moment - zero).total_seconds():+.1f}s"

    lines = [
        f"\n{o.dataset}: {len(o.parts)} parts, each one query in pool flux_{o.dataset}",
        f"{'PART':<8}{'ROWS':>8}{'TRIES':>7}{'STATE':>9}{'START':>9}{'END':>9}",
    ]
    for p in o.parts:
        rows = "-" if p["rows"] is None else str(p["rows"])
        lines.append(
            f"{p['part']:<8}{rows:>8}{p['tries']:>7}{p['state']:>9}{offset(p['start']):>9}{offset(p['end']):>9}"
        )
    if o.slot_changes:
        lines.append("pool slots during the run (throttle controller):")
        for e in o.slot_changes:
            lines.append(f"  {offset(e['at']):>8}  {e['old']} -> {e['new']}  {e['actor']}: {e['reason']}")
        why, low = stopped_by(o.slot_changes), lowest(o.slot_changes)
        if why == "server":
            lines.append(
                f"its share of the budget the data sets of the server share kept it at {low} to "
                f"{max(e['new'] for e in o.slot_changes)} slots on a server of capacity {SPLIT_CAPACITY}: the "
                "budget follows the server's own state (its memory grants), not the pool's errors"
            )
        elif why:
            lines.append(
                f"the pool came down to {low} slots for a server of capacity {SPLIT_CAPACITY}, then probed from "
                f"there (now {o.slots}): "
                + (
                    "the source's latency stopped it, before queries failed"
                    if why == "latency"
                    else "the source's errors (deadlock victims) stopped it"
                )
            )
        else:
            lines.append(f"the controller made no change during the run: {o.slots} slots")
    else:
        lines.append(f"pool slots during the run: {o.slots}, unchanged (no load errors, not saturated long enough)")
    return "\n".join(lines)


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


def report(outcomes: list[Outcome], env: dict[str, str]) -> bool:
    def cell(value) -> str:
        return "-" if value is None else str(value)

    header = (
        f"{'DATA SET':<18}{'STATUS':<10}{'EXPORTED':>10}{'UPLOADED':>10}{'STAGED':>10}{'TARGET':>8}"
        f"{'PARTITIONS':>11}{'SECONDS':>9}{'SLOTS':>6}  RECONCILED"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for o in outcomes:
        print(
            f"{o.dataset:<18}{o.state[:9]:<10}{cell(o.exported):>10}{cell(o.uploaded):>10}{cell(o.staged):>10}"
            f"{cell(o.target):>8}{cell(o.partitions):>11}{o.seconds:>9.1f}{cell(o.slots):>6}  "
            f"{'yes' if o.reconciled else 'NO'}"
        )
    for o in outcomes:
        if o.parts:
            print(_parts_table(o))
    print("\nwhere each run's time went (s): gap = waiting for the scheduler, queued = waiting for a slot and")
    print("the task process to start, ran = the task itself")
    for o in outcomes:
        if o.stages:
            cells = "  ".join(f"{s['task']} {_s(s['gap'])}+{_s(s['queued'])}+{_s(s['ran'])}" for s in o.stages)
            print(f"  {o.dataset:<18}{cells}")
    print(_partitions_text(outcomes, AFTER))
    by_name = {o.dataset: o for o in outcomes}
    ok = all(o.reconciled for o in outcomes) and all(
        waited_for_its_day(by_name[f], [by_name[u] for u in ups]) for f, ups in AFTER.items() if f in by_name
    )
    print(f"\n{'every data set ran and reconciled' if ok else 'SOME DATA SETS FAILED OR DID NOT RECONCILE'}")
    print(
        f"Airflow UI: {env['FLUX_AIRFLOW_URL']}  (user {env['FLUX_AIRFLOW_USER']}, password: "
        f"{password_command(env.get('FLUX_DEVSTACK_DIR', '.devstack'))})"
    )
    print(
        "Hive: tables media.titles, media.subscribers, media.viewing_daily, media.ad_revenue_daily and their "
        "*_latest views, via the hiveserver2_default connection"
    )
    return ok
