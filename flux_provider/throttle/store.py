"""The throttle's own tables, in Airflow's metadata database (created on first use, any backend).

* ``flux_throttle``: one row per data set: its pool, bounds, initial slots, the
  pin (NULL when the controller decides) and the limit algorithm's settings.
* ``flux_throttle_events``: every change of a data set's limit, automatic or
  manual: when, old and new value, why, who.
* ``flux_task_outcomes``: each finished try of a flux task as the controller
  saw it (data set, state, duration, error class): the samples the limit is
  fed and what the dashboard plots.
* ``flux_lost_tries``: each try lost to the orchestrator (killed, not started, its
  report or heartbeat lost) and whether its Airflow try was given back;
* ``flux_host``: the Airflow host's limit (tasks the scheduler hands out at once)
  and its pin (:mod:`flux_provider.throttle.host`);
* ``flux_source`` and ``flux_source_samples``: each source's budget, shared by
  its data sets, and the server's state each period
  (:mod:`flux_provider.throttle.sources`);
* ``flux_lease``: which process runs the controller (one at a time, whatever
  the number of schedulers).

Code here needs database access: the scheduler, the API server, the CLI.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, Text, and_, or_, select, update

metadata = MetaData()

throttle = Table(
    "flux_throttle",
    metadata,
    Column("dataset", String(250), primary_key=True),
    Column("pool", String(256), nullable=False),
    Column("low", Integer, nullable=False),
    Column("high", Integer, nullable=False),
    Column("initial", Integer, nullable=False),
    Column("pinned", Integer, nullable=True),
    Column("load_classes", Text, nullable=True),  # comma-separated override, NULL: the taxonomy's
    Column("calendar", Text, nullable=True),  # the spec's holidays and windows (flux_provider.calendars JSON)
    Column("algorithm", String(20), nullable=True),  # the limit (flux_provider.throttle.limits.ALGORITHMS), NULL: aimd
    Column("rules", Text, nullable=True),  # an adopted pool's error rules (JSON), NULL: a data set's own
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("source", String(250), nullable=True),  # the source whose budget it shares (NULL: none)
    Column("weight", Float, nullable=True),  # its share of the source's budget (NULL: 1)
    Column("floor", Integer, nullable=True),  # the slots it keeps whatever the others ask (NULL: 0)
)

events = Table(
    "flux_throttle_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("dataset", String(250), nullable=False, index=True),
    Column("old", Integer, nullable=True),
    Column("new", Integer, nullable=True),
    Column("reason", Text, nullable=False),
    Column("actor", String(250), nullable=False),
)

outcomes = Table(
    "flux_task_outcomes",
    metadata,
    Column("dag_id", String(250), primary_key=True),
    Column("run_id", String(250), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True, default=-1),
    Column("try_number", Integer, primary_key=True),
    Column("dataset", String(250), nullable=False, index=True),
    Column("state", String(20), nullable=False),
    Column("start_date", DateTime(timezone=True), nullable=True),
    Column("end_date", DateTime(timezone=True), nullable=False, index=True),
    Column("seconds", Float, nullable=True),
    Column("inflight", Integer, nullable=True),
    Column("error_class", String(40), nullable=True),
    Column("message", Text, nullable=True),
    Column("rule", Text, nullable=True),  # the recovery rule that decided, and what it decided
    Column("action", Text, nullable=True),
    Column("first_row", Float, nullable=True),  # seconds the source took to its first row (an export's)
    Column("rows_per_s", Float, nullable=True),
    Column("query_seconds", Float, nullable=True),  # seconds the export's query ran at the source
)

lost = Table(
    "flux_lost_tries",
    metadata,
    Column("dag_id", String(250), primary_key=True),
    Column("run_id", String(250), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True, default=-1),
    Column("try_number", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("cause", Text, nullable=False),
    Column("given_back", Integer, nullable=False),  # 1: Airflow's try was given back (the lost-try budget)
)

host = Table(
    "flux_host",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("value", Integer, nullable=False),  # the controller's limit on the scheduler's tasks at once
    Column("low", Integer, nullable=False),
    Column("high", Integer, nullable=False),  # [core] parallelism: never above it
    Column("pinned", Integer, nullable=True),  # a person's value (NULL: the controller decides)
    Column("mode", String(20), nullable=False),  # [flux] host_limit: adaptive or off
    Column("signals", Text, nullable=True),  # the host's signals in the last period, in words
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

source = Table(
    "flux_source",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("connection", String(250), nullable=True),  # the Airflow connection its state is read through
    Column("value", Integer, nullable=False),  # the budget: its data sets' tasks at once
    Column("low", Integer, nullable=False),
    Column("high", Integer, nullable=False),  # the sum of its data sets' maximums
    Column("pinned", Integer, nullable=True),  # a person's value (NULL: the controller decides)
    Column("algorithm", String(20), nullable=True),  # the limit on its tries when the server's state is not read
    Column("signal", Text, nullable=True),  # what sized it last, in words (server, tries, and why)
    Column("state", Text, nullable=True),  # the server's last state (ServerState JSON)
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

source_samples = Table(
    "flux_source_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("source", String(250), nullable=False, index=True),
    Column("budget", Integer, nullable=False),
    Column("slots", Integer, nullable=False),  # the sum of its data sets' pools' slots
    Column("capacity", Integer, nullable=True),
    Column("ours_granted", Integer, nullable=True),
    Column("ours_waiting", Integer, nullable=True),
    Column("others_granted", Integer, nullable=True),
    Column("others_waiting", Integer, nullable=True),
    Column("longest_query", Float, nullable=True),
    Column("longest_transaction", Float, nullable=True),
)

lease = Table(
    "flux_lease",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(250), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("period_seconds", Float, nullable=True),  # how long the holder's last period took
    Column("period_p95", Float, nullable=True),  # and the 95th percentile of its recent periods
)


#: The lease of the throttle controller (one holder acts at a time).
CONTROLLER_LEASE = "throttle-controller"


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def xcom_value(raw):
    """A value of Airflow's ``xcom`` table as Python (``XComModel.deserialize_value`` takes a row)."""
    from types import SimpleNamespace

    from airflow.models.xcom import XComModel

    return XComModel.deserialize_value(SimpleNamespace(value=raw))


def last_outcome_ends(session) -> dict[str, dt.datetime]:
    """When the last recorded try of each data set ended (where a restarted controller resumes)."""
    from sqlalchemy import func

    query = select(outcomes.c.dataset, func.max(outcomes.c.end_date)).group_by(outcomes.c.dataset)
    return {
        dataset: moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)  # SQLite returns naive UTC
        for dataset, moment in session.execute(query)
        if moment is not None
    }


def acquire_lease(session, name: str, holder: str, seconds: float, at: dt.datetime | None = None) -> bool:
    """Take or renew the lease ``name`` for ``seconds``; False if another live holder has it."""
    at = at or now()
    expires = at + dt.timedelta(seconds=seconds)
    row = session.execute(select(lease).where(lease.c.name == name)).first()
    if row is None:
        session.execute(lease.insert().values(name=name, holder=holder, expires_at=expires))
        session.flush()
        return True
    result = session.execute(
        update(lease)
        .where(and_(lease.c.name == name, or_(lease.c.holder == holder, lease.c.expires_at < at)))
        .values(holder=holder, expires_at=expires)
    )
    return result.rowcount == 1


def record_period(session, name: str, holder: str, seconds: float, p95: float) -> None:
    """The holder's last period and the 95th percentile of its recent ones, for the dashboard."""
    session.execute(
        update(lease)
        .where(and_(lease.c.name == name, lease.c.holder == holder))
        .values(period_seconds=seconds, period_p95=p95)
    )


def controller_state(session, name: str) -> dict | None:
    """Who runs the controller, until when, and how long its periods take (None: it never ran)."""
    row = session.execute(select(lease).where(lease.c.name == name)).mappings().first()
    if row is None:
        return None
    return {
        "holder": row["holder"],
        "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
        "period_seconds": row["period_seconds"],
        "period_p95": row["period_p95"],
    }


def release_lease(session, name: str, holder: str) -> bool:
    """Give the lease ``name`` up (a controller that stops), so another holder takes over at once."""
    return session.execute(lease.delete().where(and_(lease.c.name == name, lease.c.holder == holder))).rowcount == 1


def last_event(session, dataset: str):
    """The data set's last limit change (a row mapping), or None."""
    query = select(events).where(events.c.dataset == dataset).order_by(events.c.id.desc()).limit(1)
    return session.execute(query).mappings().first()


def record_event(
    session, dataset: str, old: int | None, new: int | None, reason: str, actor: str, at: dt.datetime | None = None
) -> None:
    session.execute(
        events.insert().values(at=at or now(), dataset=dataset, old=old, new=new, reason=reason, actor=actor)
    )


def upsert_dataset(
    session,
    dataset: str,
    pool: str,
    low: int,
    high: int,
    initial: int,
    load_classes: str | None = None,
    calendar: str | None = None,
    algorithm: str | None = None,
    rules: str | None = None,
    source: str | None = None,
    weight: float | None = None,
    floor: int | None = None,
) -> None:
    values = dict(
        pool=pool,
        low=low,
        high=high,
        initial=initial,
        load_classes=load_classes,
        calendar=calendar,
        algorithm=algorithm,
        rules=rules,
        source=source,
        weight=weight,
        floor=floor,
        updated_at=now(),
    )
    if session.execute(select(throttle.c.dataset).where(throttle.c.dataset == dataset)).first():
        session.execute(update(throttle).where(throttle.c.dataset == dataset).values(**values))
    else:
        session.execute(throttle.insert().values(dataset=dataset, pinned=None, **values))
