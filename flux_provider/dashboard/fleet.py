"""The fleet's progress on a busy night: runs landed over time, and what each unfinished run waits for.

Three bulk reads of Airflow's tables (the data sets' runs in the window, the task
instances of the unfinished ones, the pools' occupancy), whatever the number of data
sets. A run's wait is its first unfinished task in stage order, by kind and in words:

* ``running transform`` / ``queued for a worker: export_upload``;
* ``a slot of pool flux_x (2 of 2 in use)``, or ``the host limit (5 tasks at once)``
  when its pool has room: the scheduler has it, and the workers are the bottleneck;
* ``a retry of export_upload`` (up for retry), ``transform to be scheduled``;
* ``its turn to start`` for a run Airflow has queued behind ``max_active_runs``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import and_, func, select

from flux_provider.identifiers import dag_id_for
from flux_provider.throttle import host, store

FINISHED = ("success", "failed", "skipped", "upstream_failed", "removed")


def progress(session, hours: float = 12.0, bucket_minutes: int = 1, now: dt.datetime | None = None) -> dict:
    """The data sets' runs created in the last ``hours``: counts by state, runs landed per ``bucket_minutes``,
    and each unfinished run's wait (see the module)."""
    from airflow.models.dagrun import DagRun

    now = now or store.now()
    since = now - dt.timedelta(hours=hours)
    datasets = {dag_id_for(r.dataset): r.dataset for r in session.execute(select(store.throttle.c.dataset))}
    runs = session.execute(
        select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date, DagRun.end_date).where(
            and_(DagRun.dag_id.in_(list(datasets)), DagRun.run_after >= since)
        )
    ).all()
    states = Counter(str(r.state) for r in runs)
    landed = sorted(_utc(r.end_date) for r in runs if str(r.state) == "success" and r.end_date is not None)
    open_runs = [r for r in runs if str(r.state) in ("running", "queued")]
    waits = _waits(session, open_runs)
    return {
        "since": since.isoformat(),
        "runs": len(runs),
        "landed": states.get("success", 0),
        "failed": states.get("failed", 0),
        "running": states.get("running", 0),
        "queued": states.get("queued", 0),
        "landed_over_time": _buckets(landed, bucket_minutes),
        "waiting": sorted(
            (
                {
                    "dataset": datasets[r.dag_id],
                    "run_id": r.run_id,
                    "state": str(r.state),
                    "kind": waits[key][0],
                    "waits_for": waits[key][1],
                }
                for r in open_runs
                if (key := (r.dag_id, r.run_id)) in waits
            ),
            key=lambda w: w["dataset"],
        ),
        "waits_by_kind": dict(Counter(kind for kind, _ in waits.values())),
    }


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _buckets(landed: list[dt.datetime], minutes: int) -> list[dict]:
    """``[{at, landed, total}]``: runs landed in each bucket, and in all up to its end."""
    if not landed:
        return []
    step = dt.timedelta(minutes=minutes)
    start = landed[0].replace(second=0, microsecond=0)
    counts = Counter(int((t - start) / step) for t in landed)
    out, total = [], 0
    for n in range(max(counts) + 1):
        total += counts.get(n, 0)
        out.append({"at": (start + n * step).isoformat(), "landed": counts.get(n, 0), "total": total})
    return out


def _waits(session, open_runs: list) -> dict[tuple[str, str], tuple[str, str]]:
    from airflow.models.pool import Pool
    from airflow.models.taskinstance import TaskInstance as TI

    if not open_runs:
        return {}
    keys = {(r.dag_id, r.run_id) for r in open_runs}
    tis = session.execute(
        select(TI.dag_id, TI.run_id, TI.task_id, TI.state, TI.pool, TI.priority_weight, TI.map_index).where(
            and_(TI.dag_id.in_({k[0] for k in keys}), TI.run_id.in_({k[1] for k in keys}))
        )
    ).all()
    pools = {t.pool for t in tis}
    slots = dict(session.execute(select(Pool.pool, Pool.slots).where(Pool.pool.in_(pools))).all())
    used = Counter(
        dict(
            session.execute(
                select(TI.pool, func.count())
                .where(and_(TI.pool.in_(pools), TI.state.in_(("running", "queued"))))
                .group_by(TI.pool)
            ).all()
        )
    )
    limit = host.state(session)
    by_run: dict[tuple[str, str], list] = {}
    for t in tis:
        if (t.dag_id, t.run_id) in keys and str(t.state) not in FINISHED:
            by_run.setdefault((t.dag_id, t.run_id), []).append(t)
    waits = {}
    for r in open_runs:
        key = (r.dag_id, r.run_id)
        if str(r.state) == "queued":
            waits[key] = ("start", "its turn to start (the data set's max_active_runs)")
        elif key in by_run:
            first = min(by_run[key], key=lambda t: (t.priority_weight, t.task_id, t.map_index))
            waits[key] = _wait(first, slots, used, limit)
    return waits


def _wait(t, slots: dict, used: Counter, limit: dict | None) -> tuple[str, str]:
    """(kind, words) of what the run's first unfinished task ``t`` waits for."""
    state = str(t.state) if t.state is not None else None
    if state in ("running", "queued", "up_for_retry", "deferred"):
        words = {"running": "running", "queued": "queued for a worker", "up_for_retry": "a retry"}
        return state, f"{words.get(state, 'a trigger')}: {t.task_id}"
    if state == "scheduled":
        if used.get(t.pool, 0) >= slots.get(t.pool, 0):
            in_use = f"{used.get(t.pool, 0)} of {slots.get(t.pool, 0)} in use"
            return "pool", f"a slot of pool {t.pool} ({in_use}): {t.task_id}"
        at_once = f" ({limit['slots']} tasks at once)" if limit else ""
        return "host", f"a worker slot, the host limit{at_once}: {t.task_id}"
    return "upstream", f"upstream to finish: {t.task_id}"


__all__ = ["progress"]
