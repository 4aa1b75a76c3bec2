"""The throttle controller: watches each data set's finished tasks and sets its Airflow pool's slots.

It runs where Airflow's metadata database is reachable: a daemon thread the
plugin starts inside each scheduler (``on_starting``). Only the holder of the
``flux_lease`` row acts, so several schedulers (or a stray second process)
never double-act. Every ``period`` seconds (``[flux] throttle_period``,
default 60; make it longer than the data set's tasks usually run) it:

1. records the tries of flux tasks in throttled pools that ended since the
   last tick (from ``task_instance`` and ``task_instance_history``) with their
   duration, the number of tasks running in the pool when they ended, and the
   error class the operator left in the XCom ``flux_error`` and the source's time
   to the first row an export left in ``flux_source``
   (:mod:`flux_provider.throttle.observations`);
2. feeds them to the data set's limit (``flux_throttle.algorithm``: the latency-aware
   :class:`~flux_provider.throttle.limits.Gradient` or the error-driven
   :class:`~flux_provider.throttle.limits.AIMD`; bounds and load classes from the same row);
3. sets the pool's slots to the pin if a person pinned it, else to the limit's
   value, or to the data set's share of its source's budget when that is less
   (:mod:`flux_provider.throttle.sources`), and records every change (time, old,
   new, reason, actor);
4. completes the partition runs of facts whose day an upstream rewrote after the
   fact read it, so that they run again (:mod:`flux_provider.throttle.corrections`).

Shrinking a pool never stops running tasks; the scheduler reads the new slots
at its next loop.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import math
import os
import socket
import threading

from sqlalchemy import select

from flux_provider import calendars
from flux_provider.errors import ERROR_XCOM, ErrorClass, ErrorRecord
from flux_provider.source_timing import TIMING_XCOM, SourceTiming
from flux_provider.throttle import adopted, corrections, host, lost, migrations, observations, store
from flux_provider.throttle.host import HostWatch
from flux_provider.throttle.limits import AIMD, ALGORITHMS, DEFAULT_LOAD_CLASSES, Sample
from flux_provider.throttle.sources import Sources

log = logging.getLogger(__name__)

LEASE = store.CONTROLLER_LEASE
ACTOR = "controller"
#: How far each period looks back before the last one: a try's end date is set a moment before its final
#: state is committed, so a try that ended just before a tick can show up as final only after it.
LATE = dt.timedelta(seconds=30)


class Controller:
    def __init__(
        self,
        *,
        period: float = 60.0,
        holder: str | None = None,
        host: HostWatch | None = None,
        sources: Sources | None = None,
    ):
        self.period = period
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.limits: dict[str, AIMD] = {}  # AIMD or one of its kind (limits.ALGORITHMS)
        self.last_tick: dt.datetime | None = None
        self.periods: collections.deque[float] = collections.deque(maxlen=60)  # seconds the recent periods took
        self.host = host or HostWatch(period)
        self.sources = sources or Sources(period)
        self.applied: dict[str, int] = {}  # the slots this controller last gave each data set's pool
        self.capped: set[str] = set()  # the data sets whose source's budget set their slots last period

    def timed(self, seconds: float) -> None:
        """Keep a period's duration: logged (debug), sent as the metric ``flux.throttle.period``, and said at
        warning level when the period overran (its decisions came late); the dashboard reads it from the lease."""
        self.periods.append(seconds)
        log.debug("flux throttle: period took %.3fs", seconds)
        try:
            from airflow.stats import Stats

            Stats.timing("flux.throttle.period", seconds * 1000.0)
        except Exception:  # metrics are optional
            pass
        if seconds > self.period:
            log.warning(
                "flux throttle: a period took %.1fs, more than the %.0fs period: decisions are late "
                "(a busy scheduler host or metadata database)",
                seconds,
                self.period,
            )

    @property
    def period_p95(self) -> float | None:
        if not self.periods:
            return None
        ordered = sorted(self.periods)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    # ------------------------------------------------------------------ one period
    def tick(self, session, at: dt.datetime | None = None) -> list[tuple[str, int, int, str]]:
        """One control period; returns the changes made as (dataset, old, new, reason).

        A fixed number of queries whatever the number of data sets (each of them is one bulk query over all
        the throttled pools), plus one per failed try whose class only its XCom tells."""
        from airflow.models.pool import Pool

        at = at or store.now()
        # held for two periods: a holder that dies (SIGKILL, lost host) is replaced within three
        if not store.acquire_lease(session, LEASE, self.holder, self.period * 2, at):
            self.host.apply(session)  # another scheduler decides; this one applies its host limit
            return []
        if self.periods:
            store.record_period(session, LEASE, self.holder, self.periods[-1], self.period_p95)
        rows = session.execute(select(store.throttle)).mappings().all()
        names = [row["pool"] for row in rows]
        pools = {p.pool: p for p in session.execute(select(Pool).where(Pool.pool.in_(names))).scalars()} if rows else {}
        # after a restart (or a lease hand-over) start from what was recorded last, not from memory
        resume = {} if self.last_tick else store.last_outcome_ends(session)
        since = {
            row["dataset"]: (self.last_tick or resume.get(row["dataset"]) or at - dt.timedelta(seconds=self.period))
            - LATE  # a try's end date is written before its final state: look back (each try is kept once)
            for row in rows
        }
        rules = {row["pool"]: adopted.rules_from_json(row["rules"]) for row in rows if row["rules"]}
        samples = self.collect(session, {row["pool"]: row["dataset"] for row in rows}, since, at, rules) if rows else {}
        changes = []
        targets = self.own_targets(session, rows, pools, samples, at)
        shared = self.sources.share(session, rows, {d: t[1] for d, t in targets.items()}, samples, at)
        for row in rows:
            pool, target, reason = targets[row["dataset"]]
            if row["dataset"] in shared:  # the source's budget binds: its share, below its own limit
                target, reason = shared[row["dataset"]]
            elif row["dataset"] in self.capped and target != pool.slots:
                reason = f"its source's budget no longer binds: its own limit ({reason})"
            if row["dataset"] in shared:
                self.capped.add(row["dataset"])
            else:
                self.capped.discard(row["dataset"])
            self.applied[row["dataset"]] = target
            if target != pool.slots:
                changes.append((row["dataset"], pool.slots, target, reason))
                store.record_event(session, row["dataset"], pool.slots, target, reason, ACTOR, at)
                log.info(
                    "flux throttle: %s pool %s %d -> %d: %s", row["dataset"], row["pool"], pool.slots, target, reason
                )
                pool.slots = target
        moved = self.host.decide(session, (self.last_tick or at - dt.timedelta(seconds=self.period)), at)
        if moved:
            changes.append((host.EVENTS, *moved))
        self.host.apply(session)
        corrections.complete_corrections(session, at)  # facts whose day an upstream rewrote run again
        self.last_tick = at
        return changes

    def own_targets(self, session, rows, pools: dict, samples: dict, at: dt.datetime) -> dict[str, tuple]:
        """``dataset -> (pool, slots, reason)`` each data set's own limit (or its calendar) asks for; a pool
        that is missing is created first (never leave tasks waiting on a missing pool)."""
        from airflow.models.pool import Pool

        targets = {}
        for row in rows:
            pool = pools.get(row["pool"])
            if pool is None:
                pool = Pool(
                    pool=row["pool"],
                    slots=row["initial"],
                    description=f"flux data set {row['dataset']}",
                    include_deferred=False,
                )
                session.add(pool)
                session.flush()
                store.record_event(
                    session, row["dataset"], None, row["initial"], "pool was missing: created", ACTOR, at
                )
            decided = self.calendar_says(session, row, pool.slots, at) or self.decide(
                row, pool.slots, samples.get(row["dataset"], []), at
            )
            targets[row["dataset"]] = (pool, *decided)
        return targets

    @staticmethod
    def calendar_says(session, row, current: int, at: dt.datetime) -> tuple[int, str] | None:
        """Inside one of the data set's maintenance windows: 0 slots (a pin still wins). Just after it: the slots
        it had before (from the event that emptied the pool). Otherwise None: the limit decides."""
        if row["pinned"] is not None:
            return None
        calendar = calendars.Calendar.from_json(row.get("calendar"))
        window = calendars.window_at(calendar, at)
        if window is not None:
            return 0, calendars.describe(calendar, window)
        if current != 0:
            return None
        last = store.last_event(session, row["dataset"])
        if last and last["new"] == 0 and last["reason"].startswith(calendars.WINDOW_REASON) and last["old"]:
            return last["old"], f"{calendars.WINDOW_REASON} over: back to {last['old']}"
        return None

    def decide(self, row, current: int, samples: list[Sample], at: dt.datetime) -> tuple[int, str]:
        if row["pinned"] is not None:
            return row["pinned"], f"pinned to {row['pinned']}"
        limit = self.limits.get(row["dataset"])
        bounds = (row["low"], row["high"])
        classes = (
            frozenset(c.strip() for c in row["load_classes"].split(","))
            if row["load_classes"]
            else DEFAULT_LOAD_CLASSES
        )
        kind = ALGORITHMS.get(row.get("algorithm") or "aimd", AIMD)
        if (
            limit is None
            or (limit.low, limit.high) != bounds
            or limit.load_classes != classes
            or type(limit) is not kind
        ):
            limit = kind(
                low=row["low"],
                high=row["high"],
                value=min(max(current, row["low"]), row["high"]),
                cooldown=self.period,
                load_classes=classes,
            )
            self.limits[row["dataset"]] = limit
        elif current != self.applied.get(row["dataset"], limit.value):
            limit.reset_to(current)  # a person set the slots (unpinned) or the pool was edited: start there
        decision = limit.update(samples, at.timestamp())
        return decision.value, decision.reason

    # ------------------------------------------------------------------ observations
    def collect(
        self,
        session,
        datasets: dict[str, str],
        since: dict[str, dt.datetime],
        until: dt.datetime,
        rules: dict[str, list] | None = None,
    ) -> dict[str, list[Sample]]:
        """Tries in the pools of ``datasets`` (pool -> data set) that ended in (since[data set], until], each
        recorded once in ``flux_task_outcomes`` with its own class, message, duration and load; returned per
        data set as samples (those of the last three periods: older ones, collected after a restart, ran under
        another limit)."""
        earliest = min(since.values())
        pools = list(datasets)
        ended, running = observations.window(session, pools, earliest, until)
        # try 0 never ran (cleared before it started)
        rows = {
            key: r
            for key, r in ended.items()
            if r.start_date is not None and r.try_number > 0 and r.end_date > since[datasets[r.pool]]
        }
        if not rows:
            return {}
        recorded = observations.recorded(session, rows)
        fresh = {key: r for key, r in rows.items() if key not in recorded}
        current = observations.current_tries(session, fresh)
        # a failed try's XCom is still its own while it is the task instance's current try
        failed_now = {
            key[:4]
            for key, r in fresh.items()
            if r.state in ("failed", "up_for_retry") and current.get(key[:4]) == key[4]
        }
        records = observations.xcom_records(session, failed_now, ERROR_XCOM, ErrorRecord)
        timings = observations.xcom_records(
            session, {key[:4] for key in fresh if current.get(key[:4]) == key[4]}, TIMING_XCOM, SourceTiming
        )
        recent = until - dt.timedelta(seconds=self.period * 3)
        samples: dict[str, list[Sample]] = {}
        inserts = []
        for key, r in sorted(fresh.items(), key=lambda kv: kv[1].end_date):
            own = current.get(key[:4]) == key[4]
            record = records.get(key[:4]) if own else None
            timing = timings.get(key[:4]) if own else None
            outcome, sample = observations.observe(
                key, r, datasets[r.pool], record, running.get(r.pool, ()), timing, (rules or {}).get(r.pool)
            )
            inserts.append(outcome)
            if outcome["error_class"] == ErrorClass.LOST.value and (rules or {}).get(r.pool) is None:
                if lost.give_back(session, key, outcome["message"], r.end_date) is None:  # the scheduler's: its cause
                    outcome["message"] = lost.cause_for(session, key) or outcome["message"]
            if r.end_date >= recent:
                samples.setdefault(outcome["dataset"], []).append(sample)
        if inserts:
            session.execute(store.outcomes.insert(), inserts)
        return samples


# ------------------------------------------------------------------ people in control
def set_limit(session, dataset: str, slots: int | None, *, pin: bool, actor: str, reason: str | None = None) -> dict:
    """Pin (``pin=True``), set once (``pin=False``: the controller adapts from there) or unpin (slots None)."""
    from airflow.models.pool import Pool

    row = session.execute(select(store.throttle).where(store.throttle.c.dataset == dataset)).mappings().first()
    if row is None:
        raise KeyError(dataset)
    pool = session.execute(select(Pool).where(Pool.pool == row["pool"])).scalar_one_or_none()
    old = pool.slots if pool is not None else None
    if slots is not None and not 0 <= slots <= 10_000:
        raise ValueError(f"slots {slots} is not between 0 and 10000")
    if slots is not None and not pin and not row["low"] <= slots <= row["high"]:
        raise ValueError(
            f"slots {slots} is outside the data set's bounds {row['low']}-{row['high']}; pin it to go outside them"
        )
    pinned = slots if pin else None
    session.execute(
        store.throttle.update().where(store.throttle.c.dataset == dataset).values(pinned=pinned, updated_at=store.now())
    )
    if slots is not None and pool is not None:
        pool.slots = slots
    what = f"pinned to {slots}" if pin and slots is not None else "unpinned" if slots is None else f"set to {slots}"
    store.record_event(
        session,
        dataset,
        old,
        slots if slots is not None else old,
        f"{what} by {actor}" + (f": {reason}" if reason else ""),
        actor,
    )
    return {
        "dataset": dataset,
        "pool": row["pool"],
        "slots": slots if slots is not None else old,
        "pinned": pinned,
        "previous": old,
    }


def set_algorithm(session, dataset: str, algorithm: str, *, actor: str, reason: str | None = None) -> None:
    """Choose the limit the controller adapts the data set's pool with (it starts from the current slots)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"no limit {algorithm!r}: choose one of {', '.join(sorted(ALGORITHMS))}")
    updated = session.execute(
        store.throttle.update()
        .where(store.throttle.c.dataset == dataset)
        .values(algorithm=algorithm, updated_at=store.now())
    )
    if updated.rowcount == 0:
        raise KeyError(dataset)
    last = store.last_event(session, dataset)
    slots = last["new"] if last else None
    store.record_event(
        session, dataset, slots, slots, f"limit {algorithm} by {actor}" + (f": {reason}" if reason else ""), actor
    )


# ------------------------------------------------------------------ the scheduler-side thread
_started = threading.Event()


def in_scheduler() -> bool:
    """This process runs the controller: a scheduler."""
    return _started.is_set()


def start_in_background(period: float | None = None) -> threading.Thread | None:
    """Start the controller thread once per process (idempotent)."""
    if _started.is_set():
        return None
    _started.set()
    from flux_provider.config import flux_float

    period = period or flux_float("throttle_period")
    thread = threading.Thread(target=_loop, args=(Controller(period=period),), name="flux-throttle", daemon=True)
    thread.start()
    log.info("flux throttle controller started (period %.0fs)", period)
    return thread


def _loop(controller: Controller) -> None:
    import time

    from airflow.settings import engine
    from airflow.utils.session import create_session

    migrations.ensure_tables(engine)
    while True:
        started = time.monotonic()
        try:
            # a session of its own, not the thread's scoped one: an Airflow call that opens and closes the scoped
            # session in this thread (a connection look-up, a @provide_session helper) would detach the pools
            # this period changes, and the changes would never reach the database
            with create_session(scoped=False) as session:
                controller.tick(session)
        except Exception:  # one bad period must not stop the controller
            log.exception("flux throttle: a control period failed")
        controller.timed(time.monotonic() - started)
        time.sleep(max(1.0, controller.period - (time.monotonic() - started)))
