"""Sources: the budget data sets of one SQL Server share, kept by the throttle controller each period.

A data set's ``flux_throttle.source`` names its source (``<throttle source=>``, by default its
connection); ``flux_source`` holds each source's budget, its pin and what sized it last. Each period, for
each source with data sets (:meth:`Sources.share`):

1. the server's state is read through the source's connection
   (:func:`~flux_provider.hooks.mssql_state.read_server_state`). A login without VIEW SERVER STATE is
   said once in the scheduler log and its source follows its data sets' tries from then on; a server that
   does not answer is skipped for a few periods;
2. :class:`~flux_provider.throttle.source_budget.SourceBudget` sizes the budget (a pin wins);
3. :func:`~flux_provider.throttle.source_budget.shares` cuts it into the pools' slots, by each data set's
   weight, floor, deadline boost and what it asks for now (its tasks running, queued and waiting for a slot);
   a pinned data set keeps its pin and the others share the rest;
4. the period is recorded in ``flux_source_samples`` (budget, slots, the server's state) and every change
   of the budget as an event of ``source:<name>``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from flux_provider.hooks.mssql_state import ServerState, StateDenied, read_server_state
from flux_provider.identifiers import dag_id_for
from flux_provider.throttle import store
from flux_provider.throttle.limits import Sample
from flux_provider.throttle.source_budget import Member, SourceBudget, boost_for, shares

log = logging.getLogger(__name__)

EVENTS = "source:"  # the prefix of a source's events in flux_throttle_events
ACTOR = "controller"
#: Task states that ask for a slot of a data set's pool: running, handed out, or waiting for a slot.
DEMAND = ("running", "queued", "scheduled")
HOLDING = ("running", "queued")
#: Periods a source whose server did not answer is not asked again.
BACKOFF = 5


def event_key(name: str) -> str:
    return f"{EVENTS}{name}"


class Sources:
    def __init__(self, period: float, read_state: Callable[[str], ServerState] = read_server_state):
        self.period = period
        self.read_state = read_state
        self.budgets: dict[str, SourceBudget] = {}
        self.denied: dict[str, str] = {}  # source -> why its server's state is not read
        self.skip_until: dict[str, float] = {}
        self.given: dict[str, dict[str, int]] = {}  # source -> the shares it gave last period

    def state_of(self, name: str, connection: str | None) -> tuple[ServerState | None, str]:
        """The server's state, or None and why not."""
        if not connection:
            return None, "no connection to read the server's state through"
        if name in self.denied:
            return None, self.denied[name]
        if time.monotonic() < self.skip_until.get(name, 0.0):
            return None, "the server did not answer: asked again in a few periods"
        try:
            return self.read_state(connection), "the server's state"
        except StateDenied as exc:
            self.denied[name] = f"{exc}; grant VIEW SERVER STATE to read it"
            log.warning(
                "flux throttle: source %s: %s: its budget follows its data sets' tries", name, self.denied[name]
            )
            return None, self.denied[name]
        except Exception as exc:  # a server that does not answer must not stop the period
            self.skip_until[name] = time.monotonic() + BACKOFF * self.period
            log.warning("flux throttle: source %s: reading the server's state failed: %s", name, exc)
            return None, f"the server did not answer ({exc})"

    def share(
        self, session, rows, own: dict[str, int], samples: dict[str, list[Sample]], at: dt.datetime
    ) -> dict[str, tuple[int, str]]:
        """``dataset -> (slots, reason)`` for the data sets of every source this period: their own limit, or
        less when their source's budget binds."""
        members = {}
        for row in rows:
            if row.get("source") and row["dataset"] in own:
                members.setdefault(row["source"], []).append(row)
        if not members:
            return {}
        demand = self.demand(session, [r["pool"] for group in members.values() for r in group])
        slack = self.deadline_slack(session, at)
        known = {r["name"]: r for r in session.execute(select(store.source)).mappings()}
        states = self.states({name: (known.get(name) or {}).get("connection") for name in members})
        out = {}
        for name, group in sorted(members.items()):
            out.update(self.share_one(session, name, known.get(name), group, own, samples, demand, slack, at, states))
        return out

    def states(self, connections: dict[str, str | None]) -> dict[str, tuple[ServerState | None, str]]:
        """Every source's server state, read at once in threads of their own: a slow server costs the period
        its timeout once, and Airflow's connection look-up (which detaches the objects of its thread's
        session) never touches the controller's session."""
        with ThreadPoolExecutor(max_workers=min(8, len(connections)), thread_name_prefix="flux-source") as pool:
            futures = {name: pool.submit(self.state_of, name, conn) for name, conn in connections.items()}
            return {name: future.result() for name, future in futures.items()}

    def share_one(
        self, session, name, row, group, own, samples, demand, slack, at, states
    ) -> dict[str, tuple[int, str]]:
        high = max(sum(r["high"] for r in group), 1)
        budget = self.budgets.get(name)
        if budget is None or budget.high != high:
            start = row["value"] if row is not None and row["value"] else high
            budget = SourceBudget(
                low=1,
                high=high,
                value=min(start, high),
                algorithm=(row or {}).get("algorithm") or "gradient",
                cooldown=self.period,
            )
            last = ServerState.from_dict(json.loads(row["state"])) if row is not None and row["state"] else None
            budget.grant_kb = last.grant_kb if last is not None else None  # what a restart would have forgotten
            self.budgets[name] = budget
        elif row is not None and row["value"] and row["value"] != budget.value:  # a person set it: adapt from there
            budget.value = max(budget.low, min(budget.high, row["value"]))
            budget.fallback.reset_to(budget.value)
        state, why = states[name]
        old = budget.value
        if row is not None and row["pinned"] is not None:
            budget.observe(state)
            budget.value, reason = row["pinned"], f"pinned to {row['pinned']}"
        else:
            pooled = [s for r in group for s in samples.get(r["dataset"], [])]
            reason = budget.update(state, pooled, at.timestamp()).reason
            if state is None:
                reason = f"{reason} ({why})"
        pinned = {r["dataset"]: r["pinned"] for r in group if r["pinned"] is not None}
        free = [
            Member(
                dataset=r["dataset"],
                own=own[r["dataset"]],
                demand=demand.get(r["pool"], (0, 0))[0],
                holding=demand.get(r["pool"], (0, 0))[1],
                weight=r.get("weight") or 1.0,
                floor=r.get("floor") or 0,
                boost=boost_for(slack.get(dag_id_for(r["dataset"]))),
            )
            for r in group
            if r["dataset"] not in pinned
        ]
        # a pin is a person's cap on that data set: what it asks for now, up to the pin, is taken from the budget
        # first (an idle pinned data set reserves nothing)
        pools = {r["dataset"]: r["pool"] for r in group}
        reserved = sum(min(pin, demand.get(pools[d], (0, 0))[0]) for d, pin in pinned.items())
        given = shares(max(budget.value - reserved, 0), free, self.given.get(name))
        self.given[name] = dict(given)
        given.update(pinned)
        self.record(session, name, row, budget, state, reason if state is not None else why, sum(given.values()), at)
        if budget.value != old:
            store.record_event(session, event_key(name), old, budget.value, reason, ACTOR, at)
            log.info("flux throttle: source %s budget %d -> %d: %s", name, old, budget.value, reason)
        return {
            dataset: (slots, f"source {name}'s budget {budget.value}: share {slots} (weight, floor, deadline, demand)")
            for dataset, slots in given.items()
            if slots < own[dataset]
        }

    @staticmethod
    def record(session, name, row, budget: SourceBudget, state: ServerState | None, signal: str, slots, at) -> None:
        values = dict(
            value=budget.value,
            low=budget.low,
            high=budget.high,
            signal=f"{budget.signal}: {signal}"[:4000],
            state=json.dumps({**state.to_dict(), "grant_kb": state.grant_kb or budget.grant_kb}) if state else None,
            updated_at=at,
        )
        if row is None:
            session.execute(store.source.insert().values(name=name, pinned=None, connection=None, **values))
        else:
            session.execute(store.source.update().where(store.source.c.name == name).values(**values))
        sample = dict(at=at, source=name, budget=budget.value, slots=slots)
        if state is not None:
            sample.update(
                capacity=state.capacity,
                ours_granted=state.ours_granted,
                ours_waiting=state.ours_waiting,
                others_granted=state.others_granted,
                others_waiting=state.others_waiting,
                longest_query=state.longest_query,
                longest_transaction=state.longest_transaction,
            )
        session.execute(store.source_samples.insert().values(**sample))

    @staticmethod
    def demand(session, pools: list[str]) -> dict[str, tuple[int, int]]:
        """Per pool: its tasks running, handed to an executor or waiting for a slot, and of those the ones
        holding a slot (running or handed out)."""
        from airflow.models.taskinstance import TaskInstance as TI

        query = (
            select(TI.pool, TI.state, func.count())
            .where(TI.pool.in_(pools), TI.state.in_(DEMAND))
            .group_by(TI.pool, TI.state)
        )
        out: dict[str, tuple[int, int]] = {}
        for pool, state, count in session.execute(query):
            asking, holding = out.get(pool, (0, 0))
            out[pool] = (asking + count, holding + (count if state in HOLDING else 0))
        return out

    @staticmethod
    def deadline_slack(session, at: dt.datetime) -> dict[str, float]:
        """``dag_id -> seconds`` to the nearest deadline of its active runs (negative: missed)."""
        from airflow.models.dagrun import DagRun
        from airflow.models.deadline import Deadline

        query = (
            select(DagRun.dag_id, func.min(Deadline.deadline_time))
            .join(DagRun, DagRun.id == Deadline.dagrun_id)
            .where(DagRun.state.in_(("queued", "running")))
            .group_by(DagRun.dag_id)
        )
        out = {}
        for dag_id, when in session.execute(query):
            if when is not None:
                when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
                out[dag_id] = (when - at).total_seconds()
        return out


def register(session, name: str, connection: str | None) -> None:
    """The source ``name`` (read through ``connection``) exists; its budget starts open (at its high)."""
    row = session.execute(select(store.source.c.name).where(store.source.c.name == name)).first()
    if row is None:
        session.execute(
            store.source.insert().values(
                name=name,
                connection=connection,
                value=0,
                low=1,
                high=0,
                pinned=None,
                algorithm=None,
                signal="registered",
                state=None,
                updated_at=store.now(),
            )
        )
    elif connection:
        session.execute(store.source.update().where(store.source.c.name == name).values(connection=connection))


def set_budget(session, name: str, value: int | None, *, pin: bool, actor: str, reason: str | None = None) -> dict:
    """Pin the source's budget (``pin=True``), set it once (the controller adapts from there) or unpin (None)."""
    row = session.execute(select(store.source).where(store.source.c.name == name)).mappings().first()
    if row is None:
        raise KeyError(name)
    if value is not None and not 0 <= value <= 100_000:
        raise ValueError(f"budget {value} is not between 0 and 100000")
    values = {"pinned": value if pin else None, "updated_at": store.now()}
    if value is not None:
        values["value"] = value
    session.execute(store.source.update().where(store.source.c.name == name).values(**values))
    what = f"pinned to {value}" if pin and value is not None else "unpinned" if value is None else f"set to {value}"
    new = value if value is not None else row["value"]
    store.record_event(
        session, event_key(name), row["value"], new, f"{what} by {actor}" + (f": {reason}" if reason else ""), actor
    )
    return {"source": name, "budget": new, "pinned": values["pinned"], "previous": row["value"]}
