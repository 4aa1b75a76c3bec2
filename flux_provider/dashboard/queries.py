"""The dashboard's reads of Airflow's metadata DB: each a bulk query over every data set, never one per data set.

Pure reads: what the rows mean (health, summaries, series) is decided in
:mod:`flux_provider.dashboard.overview`, :mod:`~flux_provider.dashboard.health` and
:mod:`~flux_provider.dashboard.series`.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

from sqlalchemy import and_, func, or_, select, tuple_

from flux_provider.run_report import EXPORT, EXPORT_UPLOAD, PUBLISH, TRANSFORM, UPLOAD
from flux_provider.throttle import store
from flux_provider.throttle.tries import pool_tries

#: The tasks whose return values say how many rows each stage had.
STAGE_TASKS = (EXPORT, UPLOAD, EXPORT_UPLOAD, PUBLISH, TRANSFORM)


def throttles(session) -> list:
    return session.execute(select(store.throttle)).mappings().all()


def throttle(session, dataset: str):
    return session.execute(select(store.throttle).where(store.throttle.c.dataset == dataset)).mappings().first()


def dags(session, dag_ids: list[str]) -> dict:
    from airflow.models.dag import DagModel

    query = select(
        DagModel.dag_id, DagModel.is_paused, DagModel.is_stale, DagModel.owners, DagModel.next_dagrun_create_after
    ).where(DagModel.dag_id.in_(dag_ids))
    return {d.dag_id: d for d in session.execute(query)}


def pool_slots(session, pools: list[str]) -> dict[str, int]:
    from airflow.models.pool import Pool

    return dict(session.execute(select(Pool.pool, Pool.slots).where(Pool.pool.in_(pools))).all())


def pool_busy(session, pools: list[str]) -> dict[str, Counter]:
    """``pool -> {running, queued}`` now (scheduled tasks count as queued)."""
    from airflow.models.taskinstance import TaskInstance as TI

    busy: dict[str, Counter] = defaultdict(Counter)
    for pool, state, n in session.execute(
        select(TI.pool, TI.state, func.count())
        .where(and_(TI.pool.in_(pools), TI.state.in_(("running", "queued", "scheduled"))))
        .group_by(TI.pool, TI.state)
    ):
        busy[pool]["queued" if state == "scheduled" else str(state)] += n
    return busy


def error_counts(session, since: dt.datetime) -> dict[str, Counter]:
    """``data set -> {error class: failed tries}`` since ``since``."""
    o = store.outcomes.c
    errors: dict[str, Counter] = defaultdict(Counter)
    for dataset, error_class, n in session.execute(
        select(o.dataset, o.error_class, func.count())
        .where(and_(o.end_date >= since, o.error_class.is_not(None)))
        .group_by(o.dataset, o.error_class)
    ):
        errors[dataset][error_class] += n
    return errors


def last_changes(session, since: dt.datetime) -> dict:
    """``data set -> its last limit change`` since ``since``."""
    query = select(store.events).where(store.events.c.at >= since).order_by(store.events.c.id)
    return {e["dataset"]: e for e in session.execute(query).mappings()}


def changes(session, dataset: str) -> list:
    query = select(store.events).where(store.events.c.dataset == dataset).order_by(store.events.c.id)
    return session.execute(query).mappings().all()


def latest_runs(session, dag_ids: list[str]) -> dict:
    """``dag_id -> its newest run``."""
    from airflow.models.dagrun import DagRun

    latest = (
        select(DagRun.dag_id, func.max(DagRun.run_after).label("run_after"))
        .where(DagRun.dag_id.in_(dag_ids))
        .group_by(DagRun.dag_id)
        .subquery()
    )
    query = select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date, DagRun.end_date).join(
        latest, and_(DagRun.dag_id == latest.c.dag_id, DagRun.run_after == latest.c.run_after)
    )
    return {r.dag_id: r for r in session.execute(query)}


def recent_runs(session, dag_id: str, limit: int) -> list:
    from airflow.models.dagrun import DagRun

    query = (
        select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date, DagRun.end_date)
        .where(DagRun.dag_id == dag_id)
        .order_by(DagRun.run_after.desc())
        .limit(limit)
    )
    return session.execute(query).all()


def partition_runs(session, dag_id: str, limit: int) -> list:
    """The newest ``limit`` runs of ``dag_id`` that name a partition: Airflow's partition key, or the conf
    ``day`` of a manual run (which loads that day's partition)."""
    from airflow.models.dagrun import DagRun

    query = (
        select(
            DagRun.dag_id,
            DagRun.run_id,
            DagRun.state,
            DagRun.start_date,
            DagRun.end_date,
            DagRun.partition_key,
            DagRun.conf,
            DagRun.run_type,
        )
        .where(DagRun.dag_id == dag_id)
        .order_by(DagRun.run_after.desc())
        .limit(limit)
    )
    return [r for r in session.execute(query) if r.partition_key or (r.conf or {}).get("day")]


def run_tasks(session, dag_id: str, run_ids: list[str]) -> dict[str, list]:
    """``run_id -> its task instances`` (state, try, times, host)."""
    from airflow.models.taskinstance import TaskInstance as TI

    tasks: dict[str, list] = defaultdict(list)
    if not run_ids:
        return tasks
    query = select(
        TI.run_id, TI.task_id, TI.map_index, TI.state, TI.try_number, TI.start_date, TI.end_date, TI.hostname
    ).where(and_(TI.dag_id == dag_id, TI.run_id.in_(run_ids)))
    for ti in session.execute(query):
        tasks[ti.run_id].append(ti)
    return tasks


def stage_values(session, runs: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """The stage tasks' return values of ``runs``, in one query: ``{(dag_id, run_id): {task_id: value}}``,
    without what :func:`~flux_provider.run_report.stage_rows` does not read (columns, statements)."""
    from airflow.models.xcom import XComModel

    if not runs:
        return {}
    out: dict[tuple[str, str], dict] = defaultdict(dict)
    query = select(XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index, XComModel.value).where(
        and_(
            tuple_(XComModel.dag_id, XComModel.run_id).in_(sorted(set(runs))),  # those runs only, not every pair
            XComModel.key == "return_value",
            XComModel.task_id.in_(STAGE_TASKS),
        )
    )
    for r in session.execute(query.order_by(XComModel.map_index)):
        try:
            out[(r.dag_id, r.run_id)][r.task_id] = _counts_only(store.xcom_value(r.value))
        except Exception:  # an unreadable value shows as missing
            continue
    return out


#: What a step's record carries that the run report does not read: left out of the dashboard's reads, which
#: parse hundreds of records per page.
_NOT_COUNTED = ("columns", "statements")


def _counts_only(value):
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in _NOT_COUNTED}
        if isinstance(value.get("export"), dict):
            value["export"] = {k: v for k, v in value["export"].items() if k not in _NOT_COUNTED}
    return value


def last_failures(session, dataset: str, limit: int) -> list:
    o = store.outcomes.c
    query = (
        select(store.outcomes)
        .where(and_(o.dataset == dataset, o.error_class.is_not(None)))
        .order_by(o.end_date.desc())
        .limit(limit)
    )
    return session.execute(query).mappings().all()


def failures_since(session, dataset: str, since: dt.datetime) -> list[tuple]:
    """``(end_date, error class)`` of the data set's failed tries since ``since``."""
    o = store.outcomes.c
    query = select(o.end_date, o.error_class).where(
        and_(o.dataset == dataset, o.error_class.is_not(None), o.end_date >= since)
    )
    return session.execute(query).all()


def current_slots(session, pool: str) -> int | None:
    from airflow.models.pool import Pool

    return session.execute(select(Pool.slots).where(Pool.pool == pool)).scalar()


def tries_since(session, pool: str, since: dt.datetime) -> list:
    """Every try of ``pool`` that was queued or ran at some moment since ``since``, once each."""
    tries = pool_tries(
        session,
        ("queued_dttm", "start_date", "end_date"),
        lambda m: and_(
            m.pool == pool,
            or_(m.end_date.is_(None), m.end_date >= since),
            or_(m.queued_dttm.is_not(None), m.start_date.is_not(None)),
        ),
    )
    return list(tries.values())
