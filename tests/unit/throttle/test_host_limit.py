"""The host limit: cut when the Airflow host strains (each signal named), grow back when it is healthy and
tasks wait, pinnable; applied to the scheduler's executors, never above [core] parallelism."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from sqlalchemy.orm import Session

from flux_provider.throttle import host, store
from flux_provider.throttle.host_limit import HostLimit, HostSample, Thresholds
from tests.unit.throttle.test_controller_sql import AT, tries


def sample(t: float, **kw) -> HostSample:
    return HostSample(time=t, **{"heartbeat_lag": 2.0, "start_latency": 3.0, "load_per_core": 1.0, **kw})


def test_each_signal_cuts_and_says_which_fired():
    loaded = Thresholds(load_per_core=6.0)  # the load is a signal only when its threshold is set
    for strained, words in (
        ({"heartbeat_lag": 35.0}, "scheduler heartbeat 35s late"),
        ({"start_latency": 48.0}, "tasks 48s from queued to running"),
        ({"load_per_core": 9.5}, "load 9.5 per core"),
        ({"lost": 3}, "3 tries lost"),
    ):
        limit = HostLimit(low=2, high=8, value=8, thresholds=loaded)
        decision = limit.update(sample(0, **strained))
        assert decision.value == 5 and words in decision.reason, decision


def test_a_steady_load_that_is_not_airflows_neither_cuts_nor_stops_growth_by_default():
    limit = HostLimit(low=2, high=8, value=5)
    assert limit.update(sample(0, load_per_core=9.0, running=5, waiting=40)).value == 6


def test_it_holds_while_cooling_down_unless_tries_are_still_lost_and_never_goes_below_the_floor():
    limit = HostLimit(low=2, high=8, value=8, cooldown=30)
    assert limit.update(sample(0, heartbeat_lag=40)).value == 5
    assert limit.update(sample(10, heartbeat_lag=40)).value == 5  # the lag lags the cut
    assert limit.update(sample(20, lost=2)).value == 3  # losses cut at once
    assert limit.update(sample(60, lost=2)).value == 2
    assert "cooling down" in limit.update(sample(70)).reason and limit.value == 2  # healthy, but just cut
    assert "at the floor 2" in limit.update(sample(100, lost=1)).reason
    assert limit.update(sample(140)).value == 3  # healthy and idle: back toward high, one a period


def test_it_grows_back_one_at_a_time_only_when_healthy_full_and_tasks_wait():
    limit = HostLimit(low=2, high=8, value=4)
    assert limit.update(sample(0, running=4, waiting=10)).value == 5
    assert limit.update(sample(10, running=1, waiting=10)).value == 5  # not full: the limit is not the constraint
    assert limit.update(sample(20, running=5, waiting=0)).value == 6  # idle and healthy: back toward high
    assert limit.update(sample(30, running=6, waiting=3, heartbeat_lag=12)).reason == "host busy: holding"
    for t in range(40, 100, 10):
        limit.update(sample(t, running=limit.value, waiting=9))
    assert limit.value == 8  # never above high ([core] parallelism)


def test_a_signal_without_a_threshold_is_not_used():
    limit = HostLimit(value=8, thresholds=Thresholds(start_latency=None))
    assert limit.update(sample(0, start_latency=500.0)).value == 8


@pytest.fixture
def adaptive(monkeypatch):
    monkeypatch.setattr(host, "mode", lambda: "adaptive")  # what a new flux_host row starts in


def test_the_watch_reads_the_host_from_airflows_tables_and_lowers_the_executors(engine, adaptive):
    """Tasks that took 60 s from queued to running, and a lost try: the limit comes down from [core]
    parallelism and the scheduler's executors get it; a pin wins; the limit never exceeds parallelism."""
    executors = [SimpleNamespace(parallelism=8, slots_occupied=4), SimpleNamespace(parallelism=8, slots_occupied=3)]
    watch = host.HostWatch(10.0, executors=lambda: executors, high=8)
    queued = AT - dt.timedelta(seconds=65)
    tries(
        engine,
        "x",
        *(
            {
                "task_id": f"t{n}",
                "queued_dttm": queued,
                "start_date": queued + dt.timedelta(seconds=60),
                "state": "running",
                "end_date": None,
            }
            for n in range(3)
        ),
    )
    with engine.begin() as conn:
        conn.execute(
            store.lost.insert().values(
                dag_id="d",
                run_id="r",
                task_id="t",
                map_index=-1,
                try_number=1,
                at=AT - dt.timedelta(seconds=3),
                cause="lost",
                given_back=1,
            )
        )
    with Session(engine) as session:
        moved = watch.decide(session, AT - dt.timedelta(seconds=10), AT)
        assert watch.apply(session) == 5
        session.commit()
    assert moved[:2] == (8, 5) and "tasks 60s from queued to running" in moved[2] and "1 tries lost" in moved[2]
    assert [e.parallelism for e in executors] == [5, 5]
    with Session(engine) as session:
        shown = host.state(session)
        # "running" is what the executors hold (4 + 3), not the 3 task instances running
        assert shown["slots"] == 5 and "queued->running 60.0s" in shown["signals"] and "running 7" in shown["signals"]
        host.set_host_limit(session, 3, pin=True, actor="user admin", reason="night of the migration")
        assert watch.apply(session) == 3
        with pytest.raises(ValueError, match="never exceeds"):
            host.set_host_limit(session, 9, pin=True, actor="user admin")
        host.set_host_limit(session, None, pin=False, actor="user admin")
        assert watch.apply(session) == 5
        assert host.state(session)["reason"] == "unpinned by user admin"


def test_off_gives_the_executors_back_their_parallelism_but_records_the_signals(engine, adaptive):
    executors = [SimpleNamespace(parallelism=8)]
    watch = host.HostWatch(10.0, executors=lambda: executors, high=8)
    tries(engine, "x", {"state": "scheduled", "end_date": None, "start_date": None})
    with Session(engine) as session:
        watch.decide(session, AT - dt.timedelta(seconds=10), AT)
        host.set_host_limit(session, 3, pin=False, actor="cli")
        assert watch.apply(session) == 3 and executors[0].parallelism == 3
        host.set_mode(session, "off", actor="cli", reason="benchmark")
        assert watch.decide(session, AT, AT + dt.timedelta(seconds=10)) is None
        assert watch.apply(session) == 8 and executors[0].parallelism == 8
        shown = host.state(session)
        assert shown["mode"] == "off" and "waiting 1" in shown["signals"]
        assert shown["reason"] == "host limit off by cli: benchmark"


def test_the_schedulers_executors_are_found_where_its_loop_runs():
    """The scheduler's loop runs in its runner's methods: the runner is a frame's ``self`` (Airflow freezes the
    garbage collector's objects before forking its workers, so they cannot be searched there)."""
    import gc
    import threading

    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    runner = SchedulerJobRunner.__new__(SchedulerJobRunner)  # what the scheduler built, without a database
    executor = SimpleNamespace(parallelism=8)
    runner.executors = [executor]
    looping, stop = threading.Event(), threading.Event()

    def run_loop(self, event):  # stands for SchedulerJobRunner._run_scheduler_loop
        looping.set()
        event.wait(10)

    assert host.scheduler_executors() == []
    thread = threading.Thread(target=run_loop, args=(runner, stop))
    gc.freeze()
    try:
        thread.start()
        looping.wait(5)
        assert host.scheduler_executors() == [executor]
    finally:
        stop.set()
        thread.join()
        gc.unfreeze()


def test_a_local_executor_holds_a_slot_from_dispatch_to_result():
    """Airflow 3.3's LocalExecutor never fills ``running`` (apache/airflow#71914), so its parallelism caps
    nothing. With the host limit's accounting a dispatched task holds its slot while it waits and while it
    runs, and gives it back with its result; released, the executor is as Airflow made it."""
    from airflow.executors.local_executor import LocalExecutor
    from airflow.utils.state import TaskInstanceState

    executor = LocalExecutor(parallelism=2)
    sent = []
    executor._process_workloads = sent.extend  # the worker processes' queue, without forking workers
    assert host.hold_slots(executor) and not host.hold_slots(executor)  # installed once
    a, b = SimpleNamespace(key="a"), SimpleNamespace(key="b")
    executor._process_workloads([a, b])
    assert sent == [a, b] and executor.slots_available == 0
    executor.change_state("a", TaskInstanceState.RUNNING)  # a worker picked it up: it still runs
    assert executor.slots_available == 0
    executor.change_state("a", TaskInstanceState.SUCCESS)
    assert executor.slots_available == 1 and executor.event_buffer["a"][0] == TaskInstanceState.SUCCESS
    host.release_slots(executor)
    assert not {"_process_workloads", "change_state"} & set(vars(executor))  # the class's own methods again
