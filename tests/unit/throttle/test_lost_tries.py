"""Tries lost to the orchestrator: classified as lost with what happened, given back to the task instance
within their own budget, and not counted by the recovery rules (Airflow's ORM schema on SQLite, tries written
as Airflow writes them)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

from flux_provider.recovery import Recovery, rule_try
from flux_provider.rules import DEFAULT_RULES
from flux_provider.throttle import lost, store
from flux_provider.throttle.controller import Controller
from tests.unit.throttle.test_controller_sql import AT, data_set, period, tries

KILLED = {"state": "up_for_retry", "task_id": "export_upload", "try_number": 1, "max_tries": 5}


def max_tries(engine, task_id: str = "export_upload") -> int:
    from airflow.models.taskinstance import TaskInstance as TI

    with engine.connect() as conn:
        return conn.execute(select(TI.max_tries).where(TI.task_id == task_id)).scalar()


def lost_rows(engine):
    t = store.lost.c
    with engine.connect() as conn:
        return conn.execute(select(t.task_id, t.try_number, t.given_back).order_by(t.try_number)).all()


def test_the_rules_count_only_their_own_tries():
    assert rule_try(1, 5, 5) == 1 and rule_try(3, 5, 5) == 3
    assert rule_try(3, 7, 5) == 1  # two tries lost and given back: this is the rules' first
    assert rule_try(9, 13, 5) == 1  # cleared after 8 tries (Airflow: max_tries = 8 + retries)
    assert rule_try(2, None, None) == 2  # outside Airflow
    recovery = Recovery(rules=DEFAULT_RULES)
    record = {"error_class": "connection", "terminal": False, "message": "reset"}
    assert recovery.decide(record, rule_try(6, 6, 5)).kind == "retry"  # without the lost try it would fail
    assert recovery.decide(record, 6).kind == "fail"


def test_a_try_killed_without_reaching_the_rules_is_lost_and_given_back(engine):
    data_set(engine, "facts", 2)
    tries(engine, "facts", KILLED)
    period(engine, Controller(period=60.0, holder="test"))
    with engine.connect() as conn:
        row = conn.execute(select(store.outcomes.c.error_class, store.outcomes.c.message)).one()
    assert row.error_class == "lost" and row.message.startswith("try 1 ended up_for_retry, lost to the orchestrator")
    assert max_tries(engine) == 6 and lost_rows(engine) == [("export_upload", 1, 1)]
    period(engine, Controller(period=60.0, holder="test"), AT + dt.timedelta(seconds=60))  # seen once, given once
    assert max_tries(engine) == 6


def test_the_budget_bounds_what_is_given_back(engine, monkeypatch):
    monkeypatch.setattr(lost, "budget", lambda: 2)
    data_set(engine, "facts", 2)
    tries(
        engine,
        "facts",
        *({**KILLED, "task_id": "export_upload", "try_number": n} for n in (1, 2)),
        table="task_instance_history",
    )
    tries(engine, "facts", {**KILLED, "try_number": 3})
    period(engine, Controller(period=60.0, holder="test"))
    assert lost_rows(engine) == [("export_upload", 1, 1), ("export_upload", 2, 1), ("export_upload", 3, 0)]
    assert max_tries(engine) == 7


def test_a_try_the_scheduler_failed_itself_goes_back_to_up_for_retry_with_its_cause(engine):
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.state import TaskInstanceState

    data_set(engine, "facts", 2)
    tries(engine, "facts", {**KILLED, "state": "failed", "try_number": 6})
    message = "Executor LocalExecutor(parallelism=8) reported that the task instance finished with state failed"
    with Session(engine) as session:
        ti = session.execute(select(TI).options(lazyload("*"))).scalar_one()
        ti.state = TaskInstanceState.FAILED  # what handle_failure chose: no retry left
        lost.on_scheduler_failure(ti, message)
        session.commit()
    with engine.connect() as conn:
        state, tries_left = conn.execute(select(TI.state, TI.max_tries)).one()
        cause = conn.execute(select(store.lost.c.cause)).scalar()
    assert (state, tries_left) == ("up_for_retry", 6)
    assert cause.startswith("lost to the orchestrator: its process ended without reporting") and message in cause


def test_a_stock_task_in_an_adopted_pool_keeps_airflows_retries(engine):
    from airflow.models.taskinstance import TaskInstance as TI

    data_set(engine, "facts", 2)
    with engine.begin() as conn:
        conn.execute(store.throttle.update().values(rules="[]"))
    tries(engine, "facts", {**KILLED, "state": "failed"})
    with Session(engine) as session:
        lost.on_scheduler_failure(
            session.execute(select(TI).options(lazyload("*"))).scalar_one(), "executor reported failed"
        )
        session.commit()
    assert lost_rows(engine) == [] and max_tries(engine) == 5


def test_a_try_lost_on_the_last_retry_is_recorded_but_cannot_be_given_back(engine):
    """The worker reported it failed and Airflow had no retry left: the task instance ended before the
    controller saw the try, so there is nothing to give back."""
    data_set(engine, "facts", 2)
    tries(engine, "facts", {**KILLED, "state": "failed", "try_number": 6})
    period(engine, Controller(period=60.0, holder="test"))
    assert lost_rows(engine) == [("export_upload", 6, 0)] and max_tries(engine) == 5
