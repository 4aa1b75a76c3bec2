"""The Airflow host is a source too: the scheduler's task limit, adapted to the host's health.

Every controller period (in the scheduler, see :mod:`flux_provider.throttle.controller`)
the lease holder reads the host's signals (:class:`~flux_provider.throttle.host_limit.HostSample`:
the scheduler's heartbeat lag, the queued-to-running time of the tasks that started,
the load per core, the tries lost to the orchestrator, what runs and what waits),
feeds them to :class:`~flux_provider.throttle.host_limit.HostLimit` and stores the
limit in ``flux_host``, with every change in ``flux_throttle_events`` (as
``flux:host``). Every scheduler then applies the stored limit (or a person's pin) to
its own executors: it is the executor's ``parallelism``, which the scheduler checks
before it queues a task, lowered at run time and never raised above the
deployment's ``[core] parallelism``. Running tasks are never stopped.

With several schedulers each applies the limit to its own executors (the limit is
per scheduler). On Celery, ``[core] parallelism`` is what the scheduler hands out at
once across all workers: size it to the workers' total ``worker_concurrency``, and
the limit moves below it when the workers' host (or the scheduler's) strains.

``[flux] host_limit`` is the mode the limit starts in: ``adaptive``, or ``off`` (the executors
keep ``[core] parallelism``; the signals are still recorded). A person changes it with
``python -m flux_provider.throttle host adaptive|off``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import statistics
import sys

from sqlalchemy import func, select

from flux_provider.throttle import store
from flux_provider.throttle.host_limit import HostLimit, HostSample

log = logging.getLogger(__name__)

NAME = "host"
#: How the host limit's changes are named in ``flux_throttle_events``.
EVENTS = "flux:host"


MODES = ("adaptive", "off")


def mode() -> str:
    """``[flux] host_limit``: the mode a new ``flux_host`` row starts in (a person changes it there)."""
    from flux_provider.config import flux_str

    value = flux_str("host_limit").strip().lower()
    return value if value in MODES else "adaptive"


def configured_parallelism() -> int:
    from airflow.configuration import conf

    return conf.getint("core", "parallelism")


def scheduler_executors() -> list:
    """The executors of the scheduler running in this process, else [].

    The scheduler's main thread runs its loop inside the runner's methods for the process's life, so the
    runner is the ``self`` of one of that thread's frames. (Airflow freezes the garbage collector's objects
    before it forks workers, so a scan of ``gc.get_objects()`` would not see it.)"""
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    for frame in sys._current_frames().values():
        while frame is not None:
            runner = frame.f_locals.get("self")
            if isinstance(runner, SchedulerJobRunner) and getattr(runner, "executors", None):
                return list(runner.executors)
            frame = frame.f_back
    return []


def hold_slots(executor) -> bool:
    """Make a LocalExecutor hold a parallelism slot from dispatch to result; True when installed now.

    Airflow 3.3's LocalExecutor never records a dispatched workload in ``running`` (every other executor
    does; apache/airflow#71914), so ``parallelism`` caps nothing: the scheduler hands it every task the
    pools admit, the tasks wait in its first-in-first-out queue (``queued`` in the database, for minutes on
    a busy night, in dispatch order whatever their priority), and only its worker processes bound what runs.
    Installed on the instance the host limit drives: a dispatched workload's key is added to ``running``
    and stays there until its result (not its "running" message) arrives, so the limit bounds what is
    queued plus what runs, and the scheduler keeps the waiting tasks, picking the highest priority when a
    slot frees. Other executors (Celery, Kubernetes, ...) track ``running`` already and are left alone."""
    if getattr(executor, "_flux_holds_slots", False) or type(executor).__name__ != "LocalExecutor":
        return False
    dispatch, change = executor._process_workloads, executor.change_state

    def _process_workloads(workloads):
        for workload in workloads:
            executor.running.add(workload.key)
        dispatch(workloads)

    def change_state(key, state, info=None, remove_running=True):
        if str(getattr(state, "value", state)) == "running":  # picked up by a worker: still holds its slot
            remove_running = False
        change(key, state, info, remove_running)

    executor._process_workloads, executor.change_state = _process_workloads, change_state
    executor._flux_holds_slots = True
    return True


def release_slots(executor) -> None:
    """Back to the executor's own accounting (workloads in flight drain as their results arrive)."""
    if getattr(executor, "_flux_holds_slots", False):
        for name in ("_process_workloads", "change_state", "_flux_holds_slots"):
            executor.__dict__.pop(name, None)


def read_sample(session, since: dt.datetime, at: dt.datetime) -> HostSample:
    """The host's signals over ``(since, at]`` (four small queries)."""
    from airflow.jobs.job import Job
    from airflow.models.taskinstance import TaskInstance as TI

    beat = session.execute(
        select(func.max(Job.latest_heartbeat)).where(Job.job_type == "SchedulerJob", Job.state == "running")
    ).scalar()
    if beat is not None and beat.tzinfo is None:
        beat = beat.replace(tzinfo=dt.timezone.utc)
    started = session.execute(
        select(TI.queued_dttm, TI.start_date).where(
            TI.start_date > since, TI.start_date <= at, TI.queued_dttm.is_not(None)
        )
    ).all()
    waits = [(s - q).total_seconds() for q, s in started if s >= q]
    states = dict(
        session.execute(
            select(TI.state, func.count()).where(TI.state.in_(("scheduled", "queued", "running"))).group_by(TI.state)
        ).all()
    )
    lost = session.execute(select(func.count()).where(store.lost.c.at > since, store.lost.c.at <= at)).scalar()
    try:
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        load = None
    return HostSample(
        time=at.timestamp(),
        heartbeat_lag=max(0.0, (at - beat).total_seconds()) if beat is not None else None,
        start_latency=statistics.median(waits) if waits else None,
        load_per_core=load,
        lost=int(lost or 0),
        running=int(states.get("queued", 0) + states.get("running", 0)),
        waiting=int(states.get("scheduled", 0)),
    )


def row(session) -> dict | None:
    return session.execute(select(store.host).where(store.host.c.name == NAME)).mappings().first()


def state(session) -> dict | None:
    """The host limit as the dashboard shows it (None: no scheduler has run the controller yet)."""
    current = row(session)
    if current is None:
        return None
    last = store.last_event(session, EVENTS)
    return {
        "slots": current["pinned"] if current["pinned"] is not None else current["value"],
        "value": current["value"],
        "pinned": current["pinned"],
        "bounds": [current["low"], current["high"]],
        "mode": current["mode"],
        "signals": current["signals"],
        "reason": last["reason"] if last else None,
        "at": last["at"].isoformat() if last and last["at"] else None,
    }


class HostWatch:
    """The host limit in one scheduler: decides (lease holder) and applies (every scheduler)."""

    def __init__(self, period: float, *, executors=scheduler_executors, high: int | None = None):
        self.period = period
        self._find = executors
        self._executors: list | None = None
        self._looked = 0
        self.high = high
        self.limit: HostLimit | None = None

    def executors(self) -> list:
        """The scheduler's executors, looked for in the first periods only (a scan of the process's objects)."""
        if not self._executors and self._looked < 3:
            self._looked += 1
            self._executors = self._find()
            if self._executors:
                log.info("flux host limit: applied to %s", ", ".join(type(e).__name__ for e in self._executors))
            else:
                log.info("flux host limit: no scheduler's executors in this process (yet)")
        return self._executors or []

    def held(self) -> int | None:
        """Slots this scheduler's executors hold now (None when it has none in this process)."""
        executors = self.executors()
        if not executors:
            return None
        return sum(getattr(e, "slots_occupied", 0) for e in executors)

    def decide(self, session, since: dt.datetime, at: dt.datetime) -> tuple[int, int, str] | None:
        """One period's decision; returns (old, new, reason) when the limit moved."""
        high = self.high or configured_parallelism()
        current = row(session) or _create(session, high, mode(), at)
        if self.limit is None or (self.limit.low, self.limit.high) != (current["low"], high):
            self.limit = HostLimit(
                low=current["low"], high=high, value=min(current["value"], high), cooldown=self.period * 3
            )
        elif self.limit.value != current["value"]:
            self.limit.reset_to(current["value"])
        sample = read_sample(session, since, at)
        held = self.held()
        if held is not None:  # what the executors hold (a task's process lives on after its state is final)
            sample = dataclasses.replace(sample, running=held)
        old, signals = current["value"], _signals(sample)
        if current["mode"] == "off":  # the signals are still recorded, for the dashboard and the benchmark
            session.execute(store.host.update().where(store.host.c.name == NAME).values(signals=signals))
            return None
        decision = self.limit.update(sample)
        session.execute(
            store.host.update()
            .where(store.host.c.name == NAME)
            .values(value=decision.value, high=high, signals=signals, updated_at=at)
        )
        if decision.value == old:
            return None
        store.record_event(session, EVENTS, old, decision.value, decision.reason, "controller", at)
        log.info("flux host limit %d -> %d: %s [%s]", old, decision.value, decision.reason, signals)
        return old, decision.value, decision.reason

    def apply(self, session) -> int | None:
        """Set this scheduler's executors' parallelism to the stored limit (the pin first), or back to
        ``[core] parallelism`` when off; None when there is no limit yet."""
        current = row(session)
        if current is None:
            return None
        high = self.high or configured_parallelism()
        slots = current["pinned"] if current["pinned"] is not None else current["value"]
        slots = high if current["mode"] == "off" else max(1, min(high, slots))
        for executor in self.executors():
            if current["mode"] == "off":
                release_slots(executor)
            elif hold_slots(executor):
                log.info("flux host limit: %s now holds a slot per dispatched task", type(executor).__name__)
            if executor.parallelism != slots:
                executor.parallelism = slots
        return slots


def _create(session, high: int, first_mode: str, at: dt.datetime) -> dict:
    session.execute(
        store.host.insert().values(
            name=NAME, value=high, low=min(2, high), high=high, pinned=None, mode=first_mode, updated_at=at
        )
    )
    return row(session)


def _signals(s: HostSample) -> str:
    parts = [
        f"heartbeat {s.heartbeat_lag:.0f}s" if s.heartbeat_lag is not None else None,
        f"queued->running {s.start_latency:.1f}s" if s.start_latency is not None else None,
        f"load {s.load_per_core:.1f}/core" if s.load_per_core is not None else None,
        f"lost {s.lost}",
        f"running {s.running}",
        f"waiting {s.waiting}",
    ]
    return ", ".join(p for p in parts if p)


def set_mode(session, value: str, *, actor: str, reason: str | None = None) -> None:
    """``adaptive`` (the controller moves the limit) or ``off`` (the executors keep [core] parallelism)."""
    if value not in MODES:
        raise ValueError(f"host limit mode {value!r}: choose one of {', '.join(MODES)}")
    current = row(session) or _create(session, configured_parallelism(), value, store.now())
    session.execute(store.host.update().where(store.host.c.name == NAME).values(mode=value, updated_at=store.now()))
    slots = current["pinned"] if current["pinned"] is not None else current["value"]
    store.record_event(
        session, EVENTS, slots, slots, f"host limit {value} by {actor}" + (f": {reason}" if reason else ""), actor
    )


def set_host_limit(session, slots: int | None, *, pin: bool, actor: str, reason: str | None = None) -> dict:
    """Pin the host limit (``pin=True``), set it once (the controller adapts from there) or unpin (None)."""
    current = row(session)
    if current is None:
        raise KeyError(NAME)
    if slots is not None and not 1 <= slots <= current["high"]:
        raise ValueError(
            f"host limit {slots} is not between 1 and {current['high']} ([core] parallelism, which it never exceeds)"
        )
    old = current["pinned"] if current["pinned"] is not None else current["value"]
    values = {"pinned": slots if pin else None, "updated_at": store.now()}
    if slots is not None and not pin:
        values["value"] = max(current["low"], slots)
    session.execute(store.host.update().where(store.host.c.name == NAME).values(**values))
    new = slots if slots is not None else current["value"]
    what = f"pinned to {slots}" if pin and slots is not None else "unpinned" if slots is None else f"set to {slots}"
    store.record_event(session, EVENTS, old, new, f"{what} by {actor}" + (f": {reason}" if reason else ""), actor)
    return {"previous": old, "slots": new, "pinned": values["pinned"]}


__all__ = ["EVENTS", "HostWatch", "hold_slots", "release_slots", "read_sample", "set_host_limit", "set_mode", "state"]
