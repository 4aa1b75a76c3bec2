"""Tries lost to the orchestrator are not the data set's failures: they get a budget of their own.

A try is *lost* when it ends without reaching the recovery rules: its process was
killed (a signal, the OOM killer), the Execution API no longer knew it (a task start
answered 404, a heartbeat 410, a state report 404 on a starved host), or its
heartbeat stopped. Airflow counts such a try like any other, so on a busy night
the losses spend the retries a data set's rules keep for the source's errors.

Here each lost try of a flux task is recorded in ``flux_lost_tries`` with its cause,
and while the task instance has lost fewer than ``[flux] lost_try_budget`` tries,
its Airflow try is given back (``max_tries + 1``; a task Airflow had just failed for
want of retries goes back to ``up_for_retry``). The recovery rules count only their
own tries (:func:`flux_provider.recovery.rule_try`: Airflow's own
``max_tries - retries``), so a given-back try costs them nothing.

Two places see a lost try, both with database access: the scheduler, when it fails
a try whose process never reported (the listener's ``on_task_instance_failed``), and
the throttle controller, for a try whose worker reported it failed without a
classified error (a killed task process).
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import and_, func, select, update

from flux_provider.throttle import store

log = logging.getLogger(__name__)


def is_data_set_pool(session, pool: str) -> bool:
    """The budget covers the tasks of flux data sets (their pools); an adopted pool's stock tasks keep
    Airflow's own retries."""
    t = store.throttle.c
    return session.execute(select(t.pool).where(t.pool == pool, t.rules.is_(None))).first() is not None


def budget() -> int:
    from flux_provider.config import flux_int

    return flux_int("lost_try_budget")


def cause_of(error) -> str:
    """What happened, in words a person reads on the dashboard (Airflow's own message kept after it)."""
    text = str(error or "").strip()
    if "heartbeat" in text.lower():
        what = "its heartbeat was lost"
    elif "reported" in text.lower() and "executor" in text.lower():
        what = "its process ended without reporting (killed, or the Execution API no longer knew it)"
    elif text:
        what = "it ended without reaching the recovery rules"
    else:
        what = "it ended without reaching the recovery rules (killed by a signal or the OOM killer, or it could not "
        what += "report to the Execution API)"
    return f"lost to the orchestrator: {what}" + (f" | {text[:1500]}" if text else "")


def record(session, key: tuple, cause: str, at: dt.datetime | None = None, give=None) -> bool | None:
    """Record the lost try ``key`` (dag_id, run_id, task_id, map_index, try_number); None when it was recorded
    before. While the task instance has budget left, ``give()`` gives its try back and says whether it could;
    returns whether the try was given back."""
    t = store.lost.c
    same_ti = and_(t.dag_id == key[0], t.run_id == key[1], t.task_id == key[2], t.map_index == key[3])
    if session.execute(select(t.try_number).where(same_ti, t.try_number == key[4])).first() is not None:
        return None
    spent = session.execute(select(func.count()).where(same_ti, t.given_back == 1)).scalar() or 0
    given = spent < budget() and bool(give())
    session.execute(
        store.lost.insert().values(
            dag_id=key[0],
            run_id=key[1],
            task_id=key[2],
            map_index=key[3],
            try_number=key[4],
            at=at or store.now(),
            cause=cause[:4000],
            given_back=int(given),
        )
    )
    return given


def cause_for(session, key: tuple) -> str | None:
    """The cause recorded for the lost try ``key``, if any."""
    t = store.lost.c
    return session.execute(
        select(t.cause).where(
            t.dag_id == key[0], t.run_id == key[1], t.task_id == key[2], t.map_index == key[3], t.try_number == key[4]
        )
    ).scalar()


def on_scheduler_failure(ti, error) -> None:
    """The scheduler failed ``ti`` (an ORM task instance) itself: its try was lost. Give it back if the
    budget allows, before the scheduler commits the state it chose."""
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy.orm import object_session

    session = object_session(ti)
    if session is None or not is_data_set_pool(session, ti.pool):
        return
    key = (ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number)
    cause = cause_of(error)
    with session.begin_nested():  # a failure here must not abort the scheduler's own transaction
        given = record(session, key, cause, give=lambda: True)
    if not given:
        log.warning("flux: %s try %d lost (%s); the lost-try budget is spent", ti.task_id, ti.try_number, cause)
        return
    ti.max_tries += 1
    if ti.state == TaskInstanceState.FAILED:  # Airflow had no retry left for it: the given-back try is one
        ti.prepare_db_for_next_try(session)
        ti.state = TaskInstanceState.UP_FOR_RETRY
    log.warning("flux: %s try %d lost (%s); its try is given back", ti.task_id, ti.try_number, cause)


def give_back(session, key: tuple, cause: str, at: dt.datetime | None = None) -> bool | None:
    """For a lost try the controller found (its worker reported it failed): record it and, within the budget,
    give its try back while the task instance has not ended (``max_tries + 1``). A try lost on the task's
    last retry ended it before the controller saw it: recorded, not given back."""
    from airflow.models.taskinstance import TaskInstance as TI

    def give() -> bool:
        updated = session.execute(
            update(TI)
            .where(
                TI.dag_id == key[0],
                TI.run_id == key[1],
                TI.task_id == key[2],
                TI.map_index == key[3],
                TI.try_number >= key[4],
                TI.state.in_(("up_for_retry", "scheduled", "queued", "running", "deferred")),
            )
            .values(max_tries=TI.max_tries + 1)
            .execution_options(synchronize_session=False)
        )
        return updated.rowcount > 0

    return record(session, key, cause, at, give)


__all__ = ["budget", "cause_for", "cause_of", "give_back", "on_scheduler_failure", "record"]
