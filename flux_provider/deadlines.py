"""Freshness deadlines: a data set's run that has not finished in time alerts its channels (Airflow deadline
alerts).

A spec's ``<deadline finishBy="06:00" timezone="Europe/Amsterdam"/>`` (the first 06:00 there at or after the
run was due) or ``<deadline withinMinutes="90"/>`` (after the run was queued) becomes the DAG's
``DeadlineAlert``; when the scheduler finds the run unfinished at that moment, it hands
:func:`deadline_missed` to the executor, which posts to the spec's webhooks and e-mails its addresses (as
the recovery rules' alerts do). A run that finishes in time drops its deadline.

:class:`FinishBy` is a custom deadline reference: the plugin registers it (``deadline_references``), so the
scheduler can evaluate it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from airflow.sdk.definitions.deadline import BaseDeadlineReference, DeadlineReference, deadline_reference

log = logging.getLogger(__name__)


def next_time_of_day(moment: dt.datetime, at: str, timezone: str) -> dt.datetime:
    """The first ``at`` (``HH:MM``) in ``timezone`` at or after ``moment``, in UTC."""
    import pendulum

    hour, minute = (int(x) for x in at.split(":"))
    local = pendulum.instance(moment).in_timezone(timezone)
    due = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if due < local:
        due = due.add(days=1).replace(hour=hour, minute=minute)  # a DST change keeps the wall-clock time
    return dt.datetime.fromtimestamp(due.timestamp(), tz=dt.timezone.utc)


@deadline_reference(DeadlineReference.TYPES.DAGRUN_CREATED)
@dataclass
class FinishBy(BaseDeadlineReference):
    """The first ``at`` (``HH:MM``) in ``timezone`` at or after the run is due (its ``run_after``)."""

    at: str = "06:00"
    timezone: str = "UTC"
    required_kwargs = {"dag_id", "run_id"}

    def _evaluate_with(self, *, session, **kwargs) -> dt.datetime | None:
        from airflow.models import DagRun
        from sqlalchemy import select

        due = session.execute(
            select(DagRun.run_after).where(DagRun.dag_id == kwargs["dag_id"], DagRun.run_id == kwargs["run_id"])
        ).scalar()
        if due is None:
            return None
        if due.tzinfo is None:
            due = due.replace(tzinfo=dt.timezone.utc)
        return next_time_of_day(due, self.at, self.timezone)

    def serialize_reference(self) -> dict:
        return {"reference_type": self.reference_name, "at": self.at, "timezone": self.timezone}

    @classmethod
    def deserialize_reference(cls, reference_data: dict) -> FinishBy:
        return cls(at=reference_data["at"], timezone=reference_data["timezone"])


def alert_for(deadline, *, dataset: str, emails=(), webhooks=()):
    """The ``DeadlineAlert`` of a data set's ``<deadline>`` (the spec model's ``Deadline``), else None; a
    missed one alerts ``emails`` and ``webhooks``."""
    from airflow.sdk.definitions.callback import SyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert

    if deadline is None:
        return None
    if deadline.finish_by:
        reference, interval = FinishBy(at=deadline.finish_by, timezone=deadline.timezone), dt.timedelta(0)
        due = f"finish by {deadline.finish_by} {deadline.timezone}"
    else:
        reference = DeadlineReference.DAGRUN_QUEUED_AT
        interval = dt.timedelta(minutes=deadline.within_minutes)
        due = f"finish within {deadline.within_minutes:g} minutes of being queued"
    callback = SyncCallback(
        deadline_missed,
        kwargs={"dataset": dataset, "due": due, "emails": list(emails), "webhooks": list(webhooks)},
    )
    return DeadlineAlert(reference=reference, interval=interval, callback=callback, name=f"{dataset} freshness")


def deadline_missed(dataset: str, due: str, emails: list, webhooks: list, context=None) -> None:
    """Alert the data set's channels that a run missed its deadline (run by the executor)."""
    from flux_provider.recovery import send_alert

    run = (context or {}).get("dag_run") or {}
    deadline = (context or {}).get("deadline") or {}
    payload = {
        "dataset": dataset,
        "event": "deadline missed",
        "due": due,
        "deadline": str(_get(deadline, "deadline_time")),
        "dag_id": _get(run, "dag_id"),
        "run_id": _get(run, "dag_run_id") or _get(run, "run_id"),  # the scheduler hands the REST API's run
        "state": str(_get(run, "state")),
    }
    log.warning("data set %s: the run %s missed its deadline (%s)", dataset, payload["run_id"], due)
    send_alert(
        f"[flux] {dataset}: run {payload['run_id']} missed its deadline ({due})", payload, emails, webhooks, context
    )


def _get(value, key):
    return value.get(key) if isinstance(value, dict) else getattr(value, key, None)
