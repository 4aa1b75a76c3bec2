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
import re
from collections import Counter, defaultdict
from urllib.parse import quote

from sqlalchemy import and_, func, or_, select

from flux_provider import calendars
from flux_provider.identifiers import dag_id_for
from flux_provider.run_report import EXPORT, EXPORT_UPLOAD, PUBLISH, TRANSFORM, UPLOAD, stage_rows
from flux_provider.throttle import store

#: Health states, most urgent first (the default sort order).
HEALTH = ("failing", "throttled", "pinned", "paused", "running", "ok")
ORPHANED = "orphaned"
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
_STAGE_TASKS = (EXPORT, UPLOAD, EXPORT_UPLOAD, PUBLISH, TRANSFORM)
_DECISION = re.compile(r"^(?P<rule>[^|:\n]{1,120}): (?P<action>[^|\n]{1,300}) \| (?P<message>.*)$", re.S)


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is not None and moment.tzinfo is None:  # SQLite hands back naive UTC
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment


def iso(moment: dt.datetime | None) -> str | None:
    moment = _utc(moment)
    return moment.isoformat() if moment else None


def run_url(dag_id: str, run_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def log_url(dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int | None = None) -> str:
    """The task instance's page in the Airflow UI (its log), at ``try_number``."""
    url = f"{run_url(dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    return url + (f"?try_number={try_number}" if try_number else "")


def split_decision(text: str | None) -> tuple[str | None, str | None, str]:
    """(rule, action, message) of a recorded failure (``rule: action | message``), or (None, None, text)."""
    match = _DECISION.match(text or "")
    if not match:
        return None, None, text or ""
    return match["rule"], match["action"], match["message"]


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
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.pool import Pool
    from airflow.models.taskinstance import TaskInstance as TI

    now = store.now()
    since = now - dt.timedelta(hours=hours)
    throttles = session.execute(select(store.throttle)).mappings().all()
    dag_ids = [dag_id_for(t["dataset"]) for t in throttles]
    pools = [t["pool"] for t in throttles]
    dags = {
        d.dag_id: d
        for d in session.execute(
            select(
                DagModel.dag_id,
                DagModel.is_paused,
                DagModel.is_stale,
                DagModel.owners,
                DagModel.next_dagrun_create_after,
            ).where(DagModel.dag_id.in_(dag_ids))
        )
    }
    slots = dict(session.execute(select(Pool.pool, Pool.slots).where(Pool.pool.in_(pools))).all())
    busy: dict[str, Counter] = defaultdict(Counter)
    for pool, state, n in session.execute(
        select(TI.pool, TI.state, func.count())
        .where(and_(TI.pool.in_(pools), TI.state.in_(("running", "queued", "scheduled"))))
        .group_by(TI.pool, TI.state)
    ):
        busy[pool]["queued" if state == "scheduled" else str(state)] += n
    errors: dict[str, Counter] = defaultdict(Counter)
    for dataset, error_class, n in session.execute(
        select(store.outcomes.c.dataset, store.outcomes.c.error_class, func.count())
        .where(and_(store.outcomes.c.end_date >= since, store.outcomes.c.error_class.is_not(None)))
        .group_by(store.outcomes.c.dataset, store.outcomes.c.error_class)
    ):
        errors[dataset][error_class] += n
    last_change = {}
    for e in session.execute(
        select(store.events).where(store.events.c.at >= since).order_by(store.events.c.id)
    ).mappings():
        last_change[e["dataset"]] = e
    latest = (
        select(DagRun.dag_id, func.max(DagRun.run_after).label("run_after"))
        .where(DagRun.dag_id.in_(dag_ids))
        .group_by(DagRun.dag_id)
        .subquery()
    )
    runs = {
        r.dag_id: r
        for r in session.execute(
            select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date, DagRun.end_date).join(
                latest, and_(DagRun.dag_id == latest.c.dag_id, DagRun.run_after == latest.c.run_after)
            )
        )
    }
    values = _stage_values(session, [(r.dag_id, r.run_id) for r in runs.values()])

    out = []
    for t in throttles:
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
            "last_change": _event(last_change[dataset]) if dataset in last_change else None,
            "url": f"/dags/{quote(dag_id, safe='')}",
        }
        row["health"] = _health(row, dag)
        out.append(row)
    return out


def _health(row: dict, dag) -> str:
    if dag is None or dag.is_stale:
        return ORPHANED
    change = row["last_change"]
    if row["paused"]:
        return "paused"
    if row["last_run"] and row["last_run"]["state"] == "failed":
        return "failing"
    if row["pinned"] is not None:
        return "pinned"
    below = row["slots"] is not None and row["slots"] < row["initial"]
    if below and not (change and _by_person(change)):  # the controller holds it under its usual size
        return "throttled"
    if row["last_run"] and row["last_run"]["state"] in ("running", "queued"):
        return "running"
    return "ok"


def _by_person(event: dict) -> bool:
    return str(event["actor"]).startswith(("user ", "cli "))  # the API's and the CLI's actors


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


def _stage_values(session, runs: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """The stage tasks' return values of ``runs``, in one query: ``{(dag_id, run_id): {task_id: value}}``."""
    from airflow.models.xcom import XComModel

    if not runs:
        return {}
    wanted = set(runs)
    out: dict[tuple[str, str], dict] = defaultdict(dict)
    query = select(XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index, XComModel.value).where(
        and_(
            XComModel.dag_id.in_({d for d, _ in runs}),
            XComModel.run_id.in_({r for _, r in runs}),
            XComModel.key == "return_value",
            XComModel.task_id.in_(_STAGE_TASKS),
        )
    )
    for r in session.execute(query.order_by(XComModel.map_index)):
        if (r.dag_id, r.run_id) not in wanted:
            continue
        try:
            out[(r.dag_id, r.run_id)][r.task_id] = store.xcom_value(r.value)
        except Exception:  # an unreadable value shows as missing
            continue
    return out


# ------------------------------------------------------------------ one data set
def detail(session, dataset: str, *, runs: int = 10, errors: int = 20, hours: float = 24.0) -> dict | None:
    """One data set: its overview row, its last ``runs`` runs stage by stage, its last ``errors`` errors."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance as TI

    row = next((r for r in _rows(session, hours) if r["dataset"] == dataset), None)
    if row is None:
        return None
    dag_id = row["dag_id"]
    recent = session.execute(
        select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date, DagRun.end_date)
        .where(DagRun.dag_id == dag_id)
        .order_by(DagRun.run_after.desc())
        .limit(runs)
    ).all()
    values = _stage_values(session, [(r.dag_id, r.run_id) for r in recent])
    tasks: dict[str, list] = defaultdict(list)
    if recent:
        for ti in session.execute(
            select(
                TI.run_id, TI.task_id, TI.map_index, TI.state, TI.try_number, TI.start_date, TI.end_date, TI.hostname
            ).where(and_(TI.dag_id == dag_id, TI.run_id.in_([r.run_id for r in recent])))
        ):
            tasks[ti.run_id].append(ti)
    out_runs = []
    for run in recent:
        summary = _run_summary(run, stage_rows(values.get((dag_id, run.run_id), {}).get))
        summary["stages"] = _stages(dag_id, run.run_id, tasks[run.run_id])
        out_runs.append(summary)
    failures = (
        session.execute(
            select(store.outcomes)
            .where(and_(store.outcomes.c.dataset == dataset, store.outcomes.c.error_class.is_not(None)))
            .order_by(store.outcomes.c.end_date.desc())
            .limit(errors)
        )
        .mappings()
        .all()
    )
    return {**row, "runs": out_runs, "last_errors": [_failure(f) for f in failures]}


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
    rule, action, message = split_decision(f["message"])
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
    from airflow.models.pool import Pool
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.taskinstancehistory import TaskInstanceHistory as TIH

    row = session.execute(select(store.throttle).where(store.throttle.c.dataset == dataset)).mappings().first()
    if row is None:
        return None
    end = until or store.now()
    start = end - dt.timedelta(hours=hours)
    t0, t1 = start.timestamp(), end.timestamp()
    changes = (
        session.execute(select(store.events).where(store.events.c.dataset == dataset).order_by(store.events.c.id))
        .mappings()
        .all()
    )
    current = session.execute(select(Pool.slots).where(Pool.pool == row["pool"])).scalar()
    before = [c for c in changes if _utc(c["at"]).timestamp() <= t0]
    inside = [c for c in changes if t0 < _utc(c["at"]).timestamp() <= t1]
    first = before[-1]["new"] if before else (inside[0]["old"] if inside else current)
    steps = {"slots": [(t0, first)] + [(_utc(c["at"]).timestamp(), c["new"]) for c in inside]}

    tries = {}
    for model in (TIH, TI):  # the current try last: it wins over its archived copy
        query = select(
            model.dag_id,
            model.run_id,
            model.task_id,
            model.map_index,
            model.try_number,
            model.queued_dttm,
            model.start_date,
            model.end_date,
        ).where(
            and_(
                model.pool == row["pool"],
                or_(model.end_date.is_(None), model.end_date >= start),
                or_(model.queued_dttm.is_not(None), model.start_date.is_not(None)),
            )
        )
        for r in session.execute(query):
            tries[tuple(r[:5])] = r
    deltas: dict[str, Counter] = {"running": Counter(), "queued": Counter()}
    for r in tries.values():
        queued, started, ended = (_utc(r.queued_dttm), _utc(r.start_date), _utc(r.end_date))
        if queued:
            deltas["queued"][max(queued.timestamp(), t0)] += 1
            deltas["queued"][min((started or ended or end).timestamp(), t1)] -= 1
        if started:
            deltas["running"][max(started.timestamp(), t0)] += 1
            deltas["running"][min((ended or end).timestamp(), t1)] -= 1
    for name, delta in deltas.items():
        level, series = 0, [(t0, 0)]
        for moment in sorted(delta):
            level += delta[moment]
            if series[-1][0] == moment:
                series[-1] = (moment, level)
            else:
                series.append((moment, level))
        steps[name] = series
    t, aligned = _align(steps, t0, t1)

    bucket = _bucket_seconds(hours)
    edges = [t0 + i * bucket for i in range(int((t1 - t0) // bucket) + 1)]
    by_class: dict[str, list[int]] = {}
    failures = session.execute(
        select(store.outcomes.c.end_date, store.outcomes.c.error_class).where(
            and_(
                store.outcomes.c.dataset == dataset,
                store.outcomes.c.error_class.is_not(None),
                store.outcomes.c.end_date >= start,
            )
        )
    ).all()
    for ended, error_class in failures:
        index = min(int((_utc(ended).timestamp() - t0) // bucket), len(edges) - 1)
        by_class.setdefault(error_class, [0] * len(edges))[index] += 1
    return {
        "dataset": dataset,
        "hours": hours,
        "start": t0,
        "end": t1,
        "series": {"t": t, **aligned},
        "bounds": [row["low"], row["high"]],
        "changes": [{"t": _utc(c["at"]).timestamp(), **_event(c)} for c in inside],
        "errors": {"bucket_seconds": bucket, "t": edges, "classes": by_class},
        "windows": [
            {"start": w.start.timestamp(), "end": w.end.timestamp(), "reason": w.reason}
            for w in calendars.windows_between(calendar, start, end)
        ]
        if (calendar := calendars.Calendar.from_json(row.get("calendar")))
        else [],
    }


def _align(steps: dict[str, list[tuple[float, int]]], t0: float, t1: float) -> tuple[list[float], dict]:
    """Step series on one time axis: every series' value at every moment any of them changes, and at ``t1``."""
    moments = sorted({m for series in steps.values() for m, _ in series} | {t0, t1})
    out: dict[str, list] = {}
    for name, series in steps.items():
        values, i, level = [], 0, series[0][1]
        for moment in moments:
            while i < len(series) and series[i][0] <= moment:
                level = series[i][1]
                i += 1
            values.append(level)
        out[name] = values
    return moments, out


def _bucket_seconds(hours: float) -> int:
    """Bucket of the errors chart: about 100 bars over the window, in round minutes."""
    for minutes in (1, 5, 10, 15, 30, 60, 120, 240, 720, 1440):
        if hours * 60 / minutes <= 120:
            return minutes * 60
    return 1440 * 60
