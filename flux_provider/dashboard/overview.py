"""What the dashboard shows, read from Airflow's metadata DB in a few bulk queries (no query per data set).

* :func:`overview`: one row per data set (health, last and next run, rows, slots, errors by class, owner),
  filtered, sorted and paged; counts per health state over all data sets;
* :func:`detail`: one data set's runs (rows and duration per stage, parts, links to each task's log) and
  its last errors (class, message, the rule that fired and what it did, a link to the failing try's log);
* :func:`timeline`: slots, running and queued over a window as aligned step series, every limit change
  (reason, actor), errors by class per bucket on the same time axis, and the data set's maintenance windows.

A data set is a row of ``flux_throttle`` (made by ``pools sync``) whose DAG Airflow knows; rows whose DAG
is gone (a deleted spec, a test's leftover) are counted as ``orphaned`` and listed only when asked for.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

from flux_provider import calendars
from flux_provider.dashboard import queries as reads
from flux_provider.dashboard.health import HEALTH, ORPHANED, health_of
from flux_provider.dashboard.links import dag_url, log_url, run_url
from flux_provider.dashboard.series import align, bucket_seconds, busy_steps, error_buckets
from flux_provider.dashboard.series import utc as _utc
from flux_provider.identifiers import dag_id_for
from flux_provider.run_report import stage_rows
from flux_provider.throttle import host, store

SORT_KEYS = (
    "health",
    "dataset",
    "owner",
    "last_state",
    "last_run",
    "next_run",
    "rows",
    "slots",
    "running",
    "queued",
    "errors",
)


def iso(moment: dt.datetime | None) -> str | None:
    moment = _utc(moment)
    return moment.isoformat() if moment else None


# ------------------------------------------------------------------ overview
def overview(
    session,
    *,
    q: str | None = None,
    owner: str | None = None,
    health: list[str] | None = None,
    sort: str = "health",
    descending: bool = False,
    offset: int = 0,
    limit: int = 100,
    hours: float = 24.0,
) -> dict:
    """Every data set's row; ``health`` filters on states (``orphaned`` lists data sets whose DAG is gone)."""
    rows = _rows(session, hours)
    counts = Counter(r["health"] for r in rows)
    chosen = [r for r in rows if _matches(r, q, owner, health)]
    chosen.sort(key=lambda r: r["dataset"])
    chosen.sort(key=_sort_key(sort), reverse=descending)
    return {
        "controller": store.controller_state(session, store.CONTROLLER_LEASE),
        "host": host.state(session),
        "total": len(chosen),
        "counts": {state: counts.get(state, 0) for state in (*HEALTH, ORPHANED)},
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "order": "desc" if descending else "asc",
        "hours": hours,
        "now": iso(store.now()),
        "items": chosen[offset : offset + limit],
    }


def _matches(row: dict, q: str | None, owner: str | None, health: list[str] | None) -> bool:
    if health:
        if row["health"] not in health:
            return False
    elif row["health"] == ORPHANED:
        return False
    if q and q.lower() not in row["dataset"].lower():
        return False
    return not owner or owner.lower() in (row["owner"] or "").lower()


def _sort_key(sort: str):
    def last_run(r):
        run = r["last_run"]
        return (run is None, (run or {}).get("start") or "")

    keys = {
        "health": lambda r: (HEALTH + (ORPHANED,)).index(r["health"]),
        "dataset": lambda r: r["dataset"],
        "owner": lambda r: ((r["owner"] or "~").lower(),),
        "last_state": lambda r: (r["last_run"] or {}).get("state") or "~",
        "last_run": last_run,
        "next_run": lambda r: (r["next_run"] is None, r["next_run"] or ""),
        "rows": lambda r: (r["rows"] is None, r["rows"] or 0),
        "slots": lambda r: (r["slots"] is None, r["slots"] or 0),
        "running": lambda r: r["running"],
        "queued": lambda r: r["queued"],
        "errors": lambda r: sum(r["errors"].values()),
    }
    if sort not in keys:
        raise ValueError(f"cannot sort by {sort!r}: one of {', '.join(SORT_KEYS)}")
    return keys[sort]


def _rows(session, hours: float) -> list[dict]:
    """One row per data set, from a fixed number of bulk queries."""
    since = store.now() - dt.timedelta(hours=hours)
    throttles = reads.throttles(session)
    dag_ids = [dag_id_for(t["dataset"]) for t in throttles]
    pools = [t["pool"] for t in throttles]
    facts = dict(
        dags=reads.dags(session, dag_ids),
        slots=reads.pool_slots(session, pools),
        busy=reads.pool_busy(session, pools),
        errors=reads.error_counts(session, since),
        changes=reads.last_changes(session, since),
        runs=reads.latest_runs(session, dag_ids),
    )
    facts["values"] = reads.stage_values(session, [(r.dag_id, r.run_id) for r in facts["runs"].values()])
    return [_row(t, **facts) for t in throttles]


def _row(t, *, dags, slots, busy, errors, changes, runs, values) -> dict:
    dataset, dag_id = t["dataset"], dag_id_for(t["dataset"])
    dag, run = dags.get(dag_id), runs.get(dag_id)
    rows = stage_rows(values.get((dag_id, run.run_id), {}).get) if run else None
    row = {
        "dataset": dataset,
        "dag_id": dag_id,
        "owner": (dag.owners if dag else None) or None,
        "pool": t["pool"],
        "slots": slots.get(t["pool"]),
        "bounds": [t["low"], t["high"]],
        "initial": t["initial"],
        "pinned": t["pinned"],
        "running": busy[t["pool"]]["running"],
        "queued": busy[t["pool"]]["queued"],
        "paused": bool(dag.is_paused) if dag else None,
        "next_run": iso(dag.next_dagrun_create_after) if dag and not dag.is_paused else None,
        "last_run": _run_summary(run, rows) if run else None,
        "rows": rows["exported"] if rows else None,
        "reconciled": rows["reconciled"] if rows else None,
        "errors": dict(errors.get(dataset, {})),
        "last_change": _event(changes[dataset]) if dataset in changes else None,
        "url": dag_url(dag_id),
    }
    row["health"] = health_of(row, dag)
    return row


def _event(e) -> dict:
    """A limit change (a ``flux_throttle_events`` row)."""
    return {"at": iso(e["at"]), "old": e["old"], "new": e["new"], "reason": e["reason"], "actor": e["actor"]}


def _run_summary(run, rows: dict) -> dict:
    return {
        "run_id": run.run_id,
        "state": str(run.state),
        "start": iso(run.start_date),
        "end": iso(run.end_date),
        "url": run_url(run.dag_id, run.run_id),
        "rows": {k: rows[k] for k in ("exported", "uploaded", "staged", "target")},
        "reconciled": rows["reconciled"],
        "parts": rows["parts"],
    }


# ------------------------------------------------------------------ one data set
def detail(session, dataset: str, *, runs: int = 10, errors: int = 20, hours: float = 24.0) -> dict | None:
    """One data set: its overview row, its last ``runs`` runs stage by stage, its last ``errors`` errors."""
    row = next((r for r in _rows(session, hours) if r["dataset"] == dataset), None)
    if row is None:
        return None
    dag_id = row["dag_id"]
    recent = reads.recent_runs(session, dag_id, runs)
    values = reads.stage_values(session, [(r.dag_id, r.run_id) for r in recent])
    tasks = reads.run_tasks(session, dag_id, [r.run_id for r in recent])
    out_runs = []
    for run in recent:
        summary = _run_summary(run, stage_rows(values.get((dag_id, run.run_id), {}).get))
        summary["stages"] = _stages(dag_id, run.run_id, tasks[run.run_id])
        out_runs.append(summary)
    failures = reads.last_failures(session, dataset, errors)
    partitions = _partitions(session, dag_id, PARTITIONS_SHOWN)
    return {**row, "runs": out_runs, "partitions": partitions, "last_errors": [_failure(f) for f in failures]}


#: Partitions a data set's page lists (the newest, one row each).
PARTITIONS_SHOWN = 14


def _partitions(session, dag_id: str, shown: int) -> list[dict]:
    """The data set's newest partitions, each from its newest run: the key, state, rows written, and how
    many runs loaded it (a backfill or a rerun of a day adds one)."""
    newest: dict[str, tuple] = {}  # key -> (its newest run, how many runs loaded it); runs come newest first
    for run in reads.partition_runs(session, dag_id, shown * 4):
        key = run.partition_key or str(run.conf["day"])
        first, count = newest.get(key, (run, 0))
        newest[key] = (first, count + 1)
    listed = sorted(newest.items(), reverse=True)[:shown]
    values = reads.stage_values(session, [(run.dag_id, run.run_id) for _, (run, _) in listed])
    out = []
    for key, (run, count) in listed:
        rows = stage_rows(values.get((dag_id, run.run_id), {}).get)
        out.append(
            {
                "key": key,
                "state": str(run.state),
                "run_type": str(run.run_type),
                "rows": rows["target"],
                "exported": rows["exported"],
                "runs": count,
                "run_id": run.run_id,
                "url": run_url(run.dag_id, run.run_id),
            }
        )
    return out


def _stages(dag_id: str, run_id: str, tis: list) -> list[dict]:
    """Each task of a run once (a mapped task: its parts counted, from the first start to the last end)."""
    by_task: dict[str, list] = defaultdict(list)
    for ti in tis:
        by_task[ti.task_id].append(ti)
    stages = []
    for task_id, group in by_task.items():
        starts = [_utc(t.start_date) for t in group if t.start_date]
        ends = [_utc(t.end_date) for t in group if t.end_date]
        start, end = (min(starts) if starts else None), (max(ends) if ends else None)
        states = Counter(str(t.state) for t in group)
        one = group[0]
        stages.append(
            {
                "task_id": task_id,
                "state": str(one.state) if len(group) == 1 else ", ".join(f"{n} {s}" for s, n in states.items()),
                "parts": len(group) if one.map_index >= 0 else None,
                "tries": max(t.try_number or 0 for t in group),
                "start": iso(start),
                "end": iso(end),
                "seconds": round((end - start).total_seconds(), 1)
                if start and end and len(ends) == len(group)
                else None,
                "hosts": sorted({t.hostname for t in group if t.hostname}),
                "log_url": log_url(dag_id, run_id, task_id, one.map_index if len(group) == 1 else -1, one.try_number),
            }
        )
    return sorted(stages, key=lambda s: s["start"] or "~")


def _failure(f) -> dict:
    rule, action, message = f["rule"], f["action"], f["message"]
    return {
        "at": iso(f["end_date"]),
        "task_id": f["task_id"],
        "map_index": f["map_index"],
        "try_number": f["try_number"],
        "run_id": f["run_id"],
        "class": f["error_class"],
        "message": message or f"the try ended {f['state']} with no message: see its log",
        "rule": rule,
        "action": action,
        "log_url": log_url(f["dag_id"], f["run_id"], f["task_id"], f["map_index"], f["try_number"]),
    }


# ------------------------------------------------------------------ timeline
def timeline(session, dataset: str, *, hours: float = 24.0, until: dt.datetime | None = None) -> dict | None:
    """Slots, running and queued over the last ``hours`` as aligned step series (``t`` in epoch seconds:
    each value holds from its time to the next), the limit changes, and errors by class per bucket."""
    row = reads.throttle(session, dataset)
    if row is None:
        return None
    end = until or store.now()
    start = end - dt.timedelta(hours=hours)
    t0, t1 = start.timestamp(), end.timestamp()
    inside, slots = _slot_steps(reads.changes(session, dataset), reads.current_slots(session, row["pool"]), t0, t1)
    steps = {"slots": slots, **busy_steps(reads.tries_since(session, row["pool"], start), t0, t1, end)}
    t, aligned = align(steps, t0, t1)
    bucket = bucket_seconds(hours)
    edges, by_class = error_buckets(reads.failures_since(session, dataset, start), t0, t1, bucket)
    calendar = calendars.Calendar.from_json(row.get("calendar"))
    windows = calendars.windows_between(calendar, start, end) if calendar else []
    return {
        "dataset": dataset,
        "hours": hours,
        "start": t0,
        "end": t1,
        "series": {"t": t, **aligned},
        "bounds": [row["low"], row["high"]],
        "changes": [{"t": _utc(c["at"]).timestamp(), **_event(c)} for c in inside],
        "errors": {"bucket_seconds": bucket, "t": edges, "classes": by_class},
        "windows": [{"start": w.start.timestamp(), "end": w.end.timestamp(), "reason": w.reason} for w in windows],
    }


def _slot_steps(changes: list, current: int | None, t0: float, t1: float) -> tuple[list, list[tuple[float, int]]]:
    """(the limit changes inside [t0, t1], the slots as a step series over it)."""
    before = [c for c in changes if _utc(c["at"]).timestamp() <= t0]
    inside = [c for c in changes if t0 < _utc(c["at"]).timestamp() <= t1]
    first = before[-1]["new"] if before else (inside[0]["old"] if inside else current)
    return inside, [(t0, first)] + [(_utc(c["at"]).timestamp(), c["new"]) for c in inside]


__all__ = ["HEALTH", "ORPHANED", "SORT_KEYS", "detail", "log_url", "overview", "run_url", "timeline"]
