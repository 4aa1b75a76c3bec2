"""The controller's decisions at the SQL level: Airflow's own tables (the ORM's schema, on SQLite), tries
written as Airflow writes them, and one period of the controller read back from pools, events and outcomes."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from flux_provider.errors import ErrorRecord
from flux_provider.recovery import Outcome, RetryReason
from flux_provider.throttle import store
from flux_provider.throttle.controller import Controller

AT = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def data_set(engine, name: str, slots: int, *, pinned: int | None = None) -> None:
    from airflow.models.pool import Pool

    with engine.begin() as conn:
        conn.execute(Pool.__table__.insert(), [{"pool": f"flux_{name}", "slots": slots, "include_deferred": False}])
        conn.execute(
            store.throttle.insert(),
            [dict(dataset=name, pool=f"flux_{name}", low=1, high=8, initial=slots, pinned=pinned, updated_at=AT)],
        )


def tries(
    engine, name: str, *rows: dict, table: str = "task_instance", run_id: str = "manual__1", at: dt.datetime = AT
) -> None:
    """Tries of ``name``'s pool that ended a few seconds before ``at`` (``rows`` give state, retry_reason, ...)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory

    model = TaskInstance if table == "task_instance" else TaskInstanceHistory
    columns = {c.name for c in model.__table__.columns}
    out = []
    for n, row in enumerate(rows):
        end = at - dt.timedelta(seconds=5 + n)
        values = dict(
            id=uuid.uuid4(),
            task_instance_id=uuid.uuid4(),
            dag_id=f"flux_{name}",
            run_id=run_id,
            task_id=f"export_upload_{n}",
            map_index=-1,
            try_number=1,
            state="success",
            start_date=end - dt.timedelta(seconds=30),
            end_date=end,
            pool=f"flux_{name}",
            pool_slots=1,
            queue="default",
            priority_weight=1,
            max_tries=3,
            hostname="h",
            unixname="u",
            operator="BcpToS3Operator",
            custom_operator_name="",
            executor_config=b"\x80\x04}\x94.",
            span_status="not_started",
            task_display_name="t",
            retry_reason=None,
        )
        values.update(row)
        out.append({k: v for k, v in values.items() if k in columns})
    with engine.begin() as conn:
        conn.execute(model.__table__.insert(), out)


def period(engine, controller: Controller, at: dt.datetime = AT):
    with Session(engine) as session:
        changes = controller.tick(session, at=at)
        session.commit()
    return changes


def slots(engine, name: str) -> int:
    from airflow.models.pool import Pool

    with engine.connect() as conn:
        return conn.execute(select(Pool.slots).where(Pool.pool == f"flux_{name}")).scalar()


def deadlock_reason() -> str:
    record = ErrorRecord(error_class="deadlock", terminal=False, message="chosen as deadlock victim")
    outcome = Outcome(kind="retry", rule="deadlocks", reason="retry 1/3 in 2s", throttle_down=0.5)
    return RetryReason.of(record, outcome).to_text()


def test_a_deadlock_with_throttle_down_cuts_the_pool_and_records_each_try_once(engine):
    data_set(engine, "facts", 4)
    tries(engine, "facts", {"state": "up_for_retry", "retry_reason": deadlock_reason()}, {}, {})
    controller = Controller(period=60.0, holder="test")
    changes = period(engine, controller)
    assert [(d, old) for d, old, _, _ in changes] == [("facts", 4)] and slots(engine, "facts") == changes[0][2] < 4
    with engine.connect() as conn:
        outcomes = conn.execute(
            select(
                store.outcomes.c.state, store.outcomes.c.error_class, store.outcomes.c.rule, store.outcomes.c.action
            ).order_by(store.outcomes.c.task_id)
        ).all()
        events = conn.execute(select(store.events.c.old, store.events.c.new, store.events.c.actor)).all()
    assert outcomes == [
        ("up_for_retry", "deadlock", "deadlocks", "retry 1/3 in 2s"),
        ("success", None, None, None),
        ("success", None, None, None),
    ]
    assert events == [(4, changes[0][2], "controller")]
    period(engine, controller, AT + dt.timedelta(seconds=60))  # the same tries are not counted again
    with engine.connect() as conn:
        assert len(conn.execute(select(store.outcomes)).all()) == 3


def test_a_pinned_data_set_keeps_its_pin_whatever_fails(engine):
    data_set(engine, "pinned", 3, pinned=3)
    tries(engine, "pinned", *[{"state": "up_for_retry", "retry_reason": deadlock_reason()}] * 3)
    assert period(engine, Controller(period=60.0, holder="test")) == [] and slots(engine, "pinned") == 3


def test_a_try_archived_in_the_history_and_current_on_the_task_instance_is_one_try(engine):
    data_set(engine, "twice", 2)
    row = {"state": "success", "task_id": "t", "try_number": 1}
    tries(engine, "twice", row, table="task_instance_history")
    tries(engine, "twice", row)
    period(engine, Controller(period=60.0, holder="test"))
    with engine.connect() as conn:
        assert len(conn.execute(select(store.outcomes)).all()) == 1


def test_the_dashboard_reads_the_cut_the_failure_and_the_running_tries_from_the_same_tables(engine):
    from flux_provider.dashboard import overview

    data_set(engine, "facts", 4)
    tries(engine, "facts", {"state": "up_for_retry", "retry_reason": deadlock_reason()}, {})
    tries(engine, "facts", {"state": "running", "task_id": "still", "end_date": None, "start_date": AT})
    new = period(engine, Controller(period=60.0, holder="test"))[0][2]
    with Session(engine) as session:
        line = overview.timeline(session, "facts", hours=1, until=AT + dt.timedelta(seconds=1))
        listed = overview.overview(
            session, q="FAC", health=["orphaned"], hours=(store.now() - AT).total_seconds() / 3600 + 1
        )  # no DAG here: orphaned
        failure = overview.detail(session, "facts")["last_errors"][0]
    assert line["series"]["slots"][0] == 4 and line["series"]["slots"][-1] == new
    running = dict(zip(line["series"]["t"], line["series"]["running"]))
    assert (
        max(running.values()) == 2 and running[AT.timestamp()] == 1
    )  # the two ended tries overlapped; "still" runs on
    assert sum(line["errors"]["classes"]["deadlock"]) == 1
    assert [c["new"] for c in line["changes"]] == [new]
    assert [r["dataset"] for r in listed["items"]] == ["facts"] and listed["counts"]["orphaned"] == 1
    assert listed["items"][0]["errors"] == {"deadlock": 1} and listed["items"][0]["slots"] == new
    assert (failure["class"], failure["rule"], failure["action"], failure["message"]) == (
        "deadlock",
        "deadlocks",
        "retry 1/3 in 2s",
        "chosen as deadlock victim",
    )


def test_the_dashboard_lists_each_partition_once_from_its_newest_run(engine):
    from airflow.models.dagrun import DagRun

    from flux_provider.dashboard import overview

    data_set(engine, "dims", 2)
    runs = [  # (run id, partition key, conf, state, minutes before AT)
        ("backfill__d1", "2026-11-01", {}, "success", 30),
        ("manual__d1_again", "2026-11-01", {}, "failed", 20),
        ("manual__conf", None, {"day": "2026-11-02"}, "success", 10),
        ("manual__plain", None, {}, "success", 5),  # no partition named: not listed
    ]
    with Session(engine) as session:
        for run_id, key, conf, state, minutes in runs:
            run = DagRun(dag_id="flux_dims", run_id=run_id, run_type="manual", conf=conf, state=state)
            run.run_after, run.partition_key = AT - dt.timedelta(minutes=minutes), key
            session.add(run)
        session.commit()
        listed = overview._partitions(session, "flux_dims", 14)
    assert [(p["key"], p["state"], p["runs"], p["run_id"]) for p in listed] == [
        ("2026-11-02", "success", 1, "manual__conf"),
        ("2026-11-01", "failed", 2, "manual__d1_again"),
    ]


def timings(engine, name: str, first_rows: list[float], run_id: str = "manual__1") -> None:
    """The ``flux_source`` XComs the export tries of :func:`tries` left (their time to the first row)."""
    from airflow.models.xcom import XComModel

    from flux_provider.source_timing import TIMING_XCOM, SourceTiming

    with engine.begin() as conn:
        conn.execute(
            XComModel.__table__.insert(),
            [
                dict(
                    dag_run_id=int(run_id.rsplit("_", 1)[1]),
                    task_id=f"export_upload_{n}",
                    map_index=-1,
                    key=TIMING_XCOM,
                    dag_id=f"flux_{name}",
                    run_id=run_id,
                    value=XComModel.serialize_value(
                        SourceTiming(first_row=first, seconds=first + 10, rows=1000, rows_per_s=100.0).to_json()
                    ),
                    timestamp=AT,
                )
                for n, first in enumerate(first_rows)
            ],
        )


def test_the_gradient_limit_cuts_on_the_exports_time_to_first_row_before_anything_fails(engine):
    """Tries that all succeed: the source's time to the first row (not the tries' 30 s, which include the
    task's start-up) rises from 2 s to 6 s, and the pool is cut with that reason."""
    data_set(engine, "facts", 4)
    with engine.begin() as conn:
        conn.execute(store.throttle.update().values(algorithm="gradient"))
    controller = Controller(period=60.0, holder="test")
    tries(engine, "facts", {}, {}, {})
    timings(engine, "facts", [2.0, 2.0, 2.1])
    assert period(engine, controller) == [("facts", 4, 6, "latency 1.0x the baseline (2.0 s vs 2.0 s): 4 -> 6")]
    later = AT + dt.timedelta(seconds=60)  # the next period's tries, which started under 6 slots
    tries(engine, "facts", *[{}] * 6, run_id="manual__2", at=later)
    timings(engine, "facts", [6.0] * 6, run_id="manual__2")
    [(_, old, new, reason)] = period(engine, controller, later)
    assert (old, new, reason) == (6, 3, "latency 3.0x the baseline (6.0 s vs 2.0 s): 6 -> 3")
    with engine.connect() as conn:
        recorded = conn.execute(
            select(store.outcomes.c.run_id, store.outcomes.c.first_row, store.outcomes.c.rows_per_s)
        ).all()
    assert sorted(set(recorded)) == [("manual__1", 2.0, 100.0), ("manual__1", 2.1, 100.0), ("manual__2", 6.0, 100.0)]


def test_an_adopted_pool_of_stock_operators_is_cut_by_its_rules_and_grown_when_they_pass(engine):
    """A pool no spec made, with SQLExecuteQueryOperator tries in it: their exceptions (the XCom the plugin's
    listener leaves) are classed by the pool's rules; a deadlock is load and cuts it, a data error is not."""
    import pymssql
    from airflow.models.pool import Pool
    from airflow.models.xcom import XComModel

    from flux_provider.errors import ERROR_XCOM
    from flux_provider.throttle import adopted

    with engine.begin() as conn:
        conn.execute(Pool.__table__.insert(), [{"pool": "warehouse", "slots": 6, "include_deferred": False}])
    with Session(engine) as session:
        done = adopted.adopt(
            session,
            "warehouse",
            low=1,
            high=6,
            algorithm="aimd",
            rules=['deadlock: exception=OperationalError message="(?i)deadlock victim"'],
            actor="test",
        )
        session.commit()
    assert (done["slots"], done["rules"]) == (6, ['deadlock: exception=OperationalError message="(?i)deadlock victim"'])
    stock = {"pool": "warehouse", "operator": "SQLExecuteQueryOperator", "dag_id": "reports"}
    tries(engine, "reports", *[{**stock, "state": "failed"}] * 3, *[{**stock}] * 3)
    victim = pymssql.exceptions.OperationalError(1205, b"Transaction was chosen as the deadlock victim.")
    with engine.begin() as conn:
        conn.execute(
            XComModel.__table__.insert(),
            [
                dict(
                    dag_run_id=1,
                    task_id=f"export_upload_{n}",
                    map_index=-1,
                    key=ERROR_XCOM,
                    dag_id="reports",
                    run_id="manual__1",
                    value=XComModel.serialize_value(ErrorRecord.of(victim).to_json()),
                    timestamp=AT,
                )
                for n in range(3)
            ],
        )
    [(name, old, new, reason)] = period(engine, Controller(period=60.0, holder="test"))
    assert (name, old, new) == ("warehouse", 6, 3) and "deadlock x3" in reason
    with engine.connect() as conn:
        classes = conn.execute(
            select(store.outcomes.c.error_class, store.outcomes.c.rule).where(store.outcomes.c.state == "failed")
        ).all()
    assert set(classes) == {("deadlock", 'deadlock: exception=OperationalError message="(?i)deadlock victim"')}


def test_pool_rules_are_read_as_a_specs_match_attributes_and_bad_ones_are_refused():
    from flux_provider.throttle.adopted import PoolRule, RuleError, classify

    rule = PoolRule.parse('timeout: exception=requests.exceptions.Timeout message="read timed out"')
    record = ErrorRecord(
        error_class="unknown",
        message="ReadTimeout: read timed out",
        exception=["ReadTimeout", "requests.exceptions.ReadTimeout", "Timeout", "requests.exceptions.Timeout"],
    )
    assert classify([rule], record) == ("timeout", rule.text)
    assert classify([rule], ErrorRecord(message="read timed out")) is None  # not that exception type
    for bad, says in [
        ("slow: message=x", "start with an error class"),
        ("timeout: exit_code=3", "not one of exception, message, number"),
        ("timeout: message=(", "not a regular expression"),
        ("timeout:", "matches every error"),
        ("deadlock: number=x", "not an integer"),
    ]:
        with pytest.raises(RuleError, match=says):
            PoolRule.parse(bad)


def test_one_period_reads_every_pools_tries_at_once_whatever_the_number_of_data_sets(engine):
    """The scan of the pools' tries is one statement per table (task_instance, its history), for 3 data sets
    as for 30; and the period's time reaches the lease the dashboard reads."""
    from sqlalchemy import event

    def statements(n: int) -> int:
        for i in range(n):
            data_set(engine, f"d{n}_{i}", 2)
            tries(
                engine, f"d{n}_{i}", {"state": "success"}, {"state": "up_for_retry", "retry_reason": deadlock_reason()}
            )
        seen = []
        listener = lambda conn, cursor, sql, *a: seen.append(sql)  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            controller = Controller(period=60.0, holder="test")
            controller.timed(0.25)
            period(engine, controller)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        with engine.begin() as conn:
            conn.execute(store.throttle.delete())
        return sum(1 for sql in seen if "task_instance.pool IN" in sql or "task_instance_history.pool IN" in sql)

    assert statements(3) == statements(30) == 2
    with Session(engine) as session:
        state = store.controller_state(session, store.CONTROLLER_LEASE)
    assert (state["holder"], state["period_seconds"], state["period_p95"]) == ("test", 0.25, 0.25)


def test_a_period_that_overruns_says_so(caplog):
    controller = Controller(period=1.0, holder="test")
    for seconds in [0.1] * 18 + [0.5, 2.5]:
        controller.timed(seconds)
    assert controller.period_p95 == 0.5
    assert [r.levelname for r in caplog.records if "more than the 1s period" in r.getMessage()] == ["WARNING"]


# ------------------------------------------------------------------ a source's budget
def sourced(engine, names: list[str], source: str = "backend") -> None:
    """Data sets of one source, registered as ``pools sync`` registers them (read through ``mssql_x``)."""
    from flux_provider.throttle.sources import register

    for name in names:
        data_set(engine, name, 4)
    with Session(engine) as session:
        session.execute(store.throttle.update().values(source=source))
        register(session, source, "mssql_x")
        session.commit()


def waiting(engine, name: str, n: int) -> None:
    """``n`` tasks of ``name``'s pool that ask for a slot (scheduled, not yet handed out)."""
    tries(
        engine,
        name,
        *[{"state": "scheduled", "start_date": None, "end_date": None} for _ in range(n)],
        run_id=f"manual__{name}",
    )


def all_slots(engine) -> dict[str, int]:
    from airflow.models.pool import Pool

    with engine.connect() as conn:
        return {p: s for p, s in conn.execute(select(Pool.pool, Pool.slots).where(Pool.pool.like("flux_%")))}


def test_a_source_budget_from_the_server_is_cut_into_its_data_sets_pools_by_demand(engine):
    from flux_provider.hooks.mssql_state import ServerState
    from flux_provider.throttle.sources import Sources

    sourced(engine, ["a", "b"])
    waiting(engine, "a", 6)
    waiting(engine, "b", 1)
    server = ServerState(capacity=4, memory_kb=4096, grant_kb=1024.0, ours_granted=4, ours_waiting=2, others_granted=1)
    controller = Controller(period=10, sources=Sources(10, read_state=lambda conn: server))
    period(engine, controller)
    assert all_slots(engine) == {"flux_a": 2, "flux_b": 1}  # room 3 (4 less the other user's), by demand
    with engine.connect() as conn:
        row = conn.execute(select(store.source)).mappings().one()
        sample = conn.execute(select(store.source_samples)).mappings().one()
        event = conn.execute(select(store.events).where(store.events.c.dataset == "source:backend")).mappings().one()
    assert (row["value"], row["high"], row["signal"].split(":")[0]) == (3, 16, "server")
    assert (sample["budget"], sample["slots"], sample["capacity"], sample["ours_waiting"]) == (3, 3, 4, 2)
    assert (event["old"], event["new"]) == (16, 3) and "room for 3 of ours" in event["reason"]
    # the capacity rises: both pools back to their own limits within one period
    server = ServerState(capacity=12, memory_kb=12 * 1024, grant_kb=1024.0, ours_granted=3)
    controller.sources.read_state = lambda conn: server
    period(engine, controller, AT + dt.timedelta(seconds=10))
    assert all_slots(engine) == {"flux_a": 4, "flux_b": 4}


def test_a_pinned_budget_wins_and_a_denied_login_falls_back_to_the_tries_said_once(engine, caplog):
    from flux_provider.hooks.mssql_state import StateDenied
    from flux_provider.throttle.sources import Sources, set_budget

    def denied(conn):
        calls.append(conn)
        raise StateDenied("the login may not read the server's state (SQL Server error 300)")

    calls: list = []
    sourced(engine, ["a", "b"])
    waiting(engine, "a", 3)
    waiting(engine, "b", 3)
    controller = Controller(period=10, sources=Sources(10, read_state=denied))
    for n in range(2):
        period(engine, controller, AT + dt.timedelta(seconds=10 * n))
    assert calls == ["mssql_x"]  # asked once, then the refusal is remembered
    assert sum("VIEW SERVER STATE" in r.message for r in caplog.records) == 1
    with Session(engine) as session:
        set_budget(session, "backend", 3, pin=True, actor="tester")
        session.commit()
    period(engine, controller, AT + dt.timedelta(seconds=20))
    assert sum(all_slots(engine).values()) == 3
    with engine.connect() as conn:
        signal = conn.execute(select(store.source.c.signal)).scalar()
    assert signal.startswith("tries:") and "grant VIEW SERVER STATE" in signal


def test_an_adopted_stock_pool_joins_a_source_and_shares_its_budget(engine):
    from airflow.models.pool import Pool

    from flux_provider.hooks.mssql_state import ServerState
    from flux_provider.throttle import adopted
    from flux_provider.throttle.sources import Sources

    sourced(engine, ["a"])
    with engine.begin() as conn:
        conn.execute(Pool.__table__.insert(), [{"pool": "warehouse", "slots": 6, "include_deferred": False}])
    with Session(engine) as session:
        done = adopted.adopt(session, "warehouse", low=1, high=6, source="backend", actor="test")
        session.commit()
    assert done["source"] == "backend"
    waiting(engine, "a", 4)
    tries(
        engine,
        "warehouse",
        *[
            {"state": "scheduled", "start_date": None, "end_date": None, "pool": "warehouse", "dag_id": "stock_dag"}
            for _ in range(4)
        ],
        run_id="manual__w",
    )
    server = ServerState(capacity=5, memory_kb=5120, grant_kb=1024.0, ours_granted=5, ours_waiting=3, others_granted=1)
    period(engine, Controller(period=10, sources=Sources(10, read_state=lambda conn: server)))
    slots = all_slots(engine) | {"warehouse": 0}
    with engine.connect() as conn:
        slots["warehouse"] = conn.execute(select(Pool.slots).where(Pool.pool == "warehouse")).scalar()
    assert slots == {"flux_a": 2, "warehouse": 2}  # room for 4 (5 less the other user's), shared by demand


def test_an_idle_pinned_data_set_reserves_nothing_of_its_sources_budget(engine):
    """Pins are a person's caps: five idle data sets pinned at 1 must not leave a data set that waits with no
    slot under a budget of 3."""
    from flux_provider.hooks.mssql_state import ServerState
    from flux_provider.throttle.sources import Sources

    names = ["busy", *(f"pinned{n}" for n in range(5))]
    sourced(engine, names)
    with engine.begin() as conn:
        conn.execute(store.throttle.update().where(store.throttle.c.dataset.like("pinned%")).values(pinned=1))
    waiting(engine, "busy", 6)
    server = ServerState(capacity=3, memory_kb=3072, grant_kb=1024.0, ours_granted=3)
    period(engine, Controller(period=10, sources=Sources(10, read_state=lambda conn: server)))
    got = all_slots(engine)
    assert got["flux_busy"] == 3 and all(got[f"flux_pinned{n}"] == 1 for n in range(5)), got
