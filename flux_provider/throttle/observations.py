"""What the controller observes each period: every throttled pool's tries that ended, read in one query, each
with its duration, the tries that ran beside it, its error class (from Airflow's retry reason, the operator's
``flux_error`` XCom or, for a try lost to the orchestrator, ``lost``) and the source's timing."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select

from flux_provider.errors import ErrorClass, ErrorRecord
from flux_provider.recovery import RetryReason
from flux_provider.source_timing import SourceTiming
from flux_provider.throttle import adopted, lost, store
from flux_provider.throttle.limits import Sample
from flux_provider.throttle.tries import KEY, pool_tries

# tries that ran and ended (upstream_failed and skipped tasks never ran, though Airflow gives them dates)
FINAL = ("success", "failed", "up_for_retry")


def window(session, pools: list[str], earliest: dt.datetime, until: dt.datetime) -> tuple[dict, dict]:
    """One read of every pool's tries that ran in ``[earliest, until]``: those that ended in it (try key ->
    row) and, per pool, what ran (``[(start, end or None)]``, to count what ran beside each)."""
    seen = pool_tries(
        session,
        ("state", "pool", "start_date", "end_date", "retry_reason"),
        lambda m: and_(m.pool.in_(pools), m.start_date <= until, or_(m.end_date.is_(None), m.end_date >= earliest)),
    )
    ended = {
        key: r
        for key, r in seen.items()
        if r.end_date is not None and earliest < r.end_date <= until and r.state in FINAL
    }
    running: dict[str, list[tuple]] = {}
    for r in seen.values():
        running.setdefault(r.pool, []).append((r.start_date, r.end_date))
    return ended, running


def observe(
    key: tuple,
    r,
    dataset: str,
    record: ErrorRecord | None,
    running,
    timing: SourceTiming | None = None,
    rules: list | None = None,
) -> tuple[dict, Sample]:
    """One ended try: its ``flux_task_outcomes`` row and its sample (class, duration, tries in flight, and
    the source's time to the first row when the operator recorded it). ``rules``: an adopted pool's."""
    seconds = (r.end_date - r.start_date).total_seconds()
    failed = r.state in ("failed", "up_for_retry")
    failure = classify(r, record, rules) if failed else None
    inflight = max(sum(1 for start, end in running if _overlaps(start, end, r.end_date)), 1)
    outcome = dict(zip(KEY, key))
    outcome.update(
        dataset=dataset,
        state=str(r.state),
        start_date=r.start_date,
        end_date=r.end_date,
        seconds=seconds,
        inflight=inflight,
        error_class=failure.error_class if failure else None,
        message=failure.message if failure else None,
        rule=failure.rule if failure else None,
        action=failure.decision if failure else None,
        first_row=timing.first_row if timing else None,
        rows_per_s=timing.rows_per_s if timing else None,
        query_seconds=timing.seconds if timing else failure.query_seconds if failure else None,
    )
    sample = Sample(
        time=r.end_date.timestamp(),
        latency=seconds,
        inflight=inflight,
        failed=failed,
        error_class=failure.error_class if failure else None,
        throttle_down=failure.throttle_down if failure else None,
        first_row=timing.first_row if timing else None,
        query_seconds=outcome["query_seconds"],
    )
    return outcome, sample


def recorded(session, rows: dict) -> set[tuple]:
    """The keys of ``rows`` already in ``flux_task_outcomes`` (recorded, and fed to a limit, once)."""
    o = store.outcomes.c
    query = select(o.dag_id, o.run_id, o.task_id, o.map_index, o.try_number).where(
        and_(o.dag_id.in_({k[0] for k in rows}), o.run_id.in_({k[1] for k in rows}))
    )
    return {tuple(r) for r in session.execute(query)} & set(rows)


def current_tries(session, rows: dict) -> dict:
    """``(dag_id, run_id, task_id, map_index) -> try_number`` now on ``task_instance`` for those rows."""
    from airflow.models.taskinstance import TaskInstance as TI

    if not rows:
        return {}
    runs = {(k[0], k[1]) for k in rows}
    query = select(TI.dag_id, TI.run_id, TI.task_id, TI.map_index, TI.try_number).where(
        and_(TI.dag_id.in_({d for d, _ in runs}), TI.run_id.in_({r for _, r in runs}))
    )
    return {
        (r.dag_id, r.run_id, r.task_id, r.map_index): r.try_number
        for r in session.execute(query)
        if (r.dag_id, r.run_id) in runs
    }


def classify(r, record: ErrorRecord | None, rules: list | None = None) -> RetryReason:
    """The class, throttleDown factor, rule, decision and message of one failed try: from the reason Airflow
    stored with a retried try (it stays with that try), else from its ``flux_error`` XCom ``record`` (None
    when the next try cleared it; an adopted pool's ``rules`` class a stock operator's), else ``crash``: the
    try was lost to the orchestrator (killed by a signal or the OOM killer, not started, heartbeat lost)."""
    reason = RetryReason.from_text(r.retry_reason)
    if reason is not None:
        return reason
    matched = adopted.classify(rules, record) if rules and record is not None else None
    if matched is not None:
        return RetryReason(matched[0], matched[1], None, (record.message or "")[:4000], None)
    if record is not None:
        decision = record.recovery
        return RetryReason(
            record.error_class,
            decision.rule if decision else None,
            decision.reason if decision else None,
            (record.message or "")[:4000],
            decision.throttle_down if decision and decision.throttle_down else None,
        )
    return RetryReason(ErrorClass.LOST.value, None, None, f"try {r.try_number} ended {r.state}, {lost.cause_of(None)}")


def xcom_records(session, keys: set[tuple], name: str, kind: type) -> dict:
    """``(dag_id, run_id, task_id, map_index) -> record`` of the XComs ``name`` of ``keys``, read as the
    record type ``kind`` (``flux_error``: ErrorRecord, ``flux_source``: SourceTiming)."""
    from airflow.models.xcom import XComModel

    if not keys:
        return {}
    query = select(XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index, XComModel.value)
    query = query.where(
        and_(
            XComModel.key == name,
            XComModel.dag_id.in_({k[0] for k in keys}),
            XComModel.run_id.in_({k[1] for k in keys}),
        )
    )
    out = {}
    for dag_id, run_id, task_id, map_index, value in session.execute(query):
        key = (dag_id, run_id, task_id, map_index)
        if key in keys:
            try:
                out[key] = kind.from_json(store.xcom_value(value))
            except Exception:  # an unreadable record says nothing (an unknown failure, no timing)
                continue
    return out


def _overlaps(start: dt.datetime, end: dt.datetime | None, moment: dt.datetime) -> bool:
    """A try that ran from ``start`` to ``end`` (None: still running) was running at ``moment``."""
    return start <= moment and (end is None or end >= moment)
