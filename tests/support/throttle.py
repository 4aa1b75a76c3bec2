"""Helpers for the throttle tests on the stack (not tests): the metadata DB, pools, throttle events and
the check that a pool was never overrun."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import create_engine, select

from flux_provider.throttle import store

PERIOD = 10  # [flux] throttle_period on the local stack


def host_limit(env: dict, mode: str) -> None:
    """Switch the stack's host limit (``adaptive`` or ``off``) with the CLI, as the test suite."""
    from flux_devstack.burst import host_limit as switch

    switch(env, mode, "the test suite")


def stack_db(stack):
    return create_engine(stack.env()["FLUX_AIRFLOW_DB"])  # SQLite, or PostgreSQL on the cluster stack


def slots(airflow_client, dataset: str) -> int:
    return airflow_client.request("GET", f"/pools/flux_{dataset}").json()["slots"]


def events(stack, dataset: str) -> list[dict]:
    with stack_db(stack).connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                select(store.events).where(store.events.c.dataset == dataset).order_by(store.events.c.id)
            ).mappings()
        ]


def concurrency_ok(tis: list[dict], history: list[dict], initial: int) -> None:
    """Whenever the scheduler admitted a task into the pool (queued it), the tasks holding slots (queued or
    running, it included) did not exceed the slots in effect then. (A task queued before a shrink may start
    running after it: shrinking never pre-empts, so the admission time is what the pool controls.)"""

    def slots_at(moment):
        value = initial
        for e in history:
            if e["at"].replace(tzinfo=dt.timezone.utc) <= moment and e["new"] is not None:
                value = e["new"]
        return value

    spans = [
        (dt.datetime.fromisoformat(t["queued_when"]), dt.datetime.fromisoformat(t["end_date"]))
        for t in tis
        if t["queued_when"] and t["end_date"]
    ]
    assert spans
    for admitted, _ in spans:
        holding = sum(1 for q, e in spans if q <= admitted < e)
        # a pool change reaches the scheduler at its next loop: allow the slots of one second before
        assert holding <= max(slots_at(admitted), slots_at(admitted - dt.timedelta(seconds=1))), (admitted, holding)
