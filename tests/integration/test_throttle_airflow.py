"""The throttle controller, API, auth and dashboard against the real local stack (scheduler, API server)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
import time

import httpx
import pytest
from sqlalchemy import and_, select

from flux_devstack.airflow_api import AirflowApiError
from flux_provider.throttle import store
from tests.support.stack import inject_fault, seed_table, wait_until
from tests.support.throttle import PERIOD, concurrency_ok, events, slots, stack_db

pytestmark = pytest.mark.stack


@pytest.fixture(autouse=True)
def forget_test_datasets(stack, airflow_client):
    """Each test's data sets leave no pool or throttle row behind."""
    yield
    engine = stack_db(stack)
    with engine.begin() as conn:
        names = [
            r[0]
            for r in conn.execute(select(store.throttle.c.dataset))
            if r[0].startswith(("auth", "pin", "dash", "tx", "ty", "tf", "ts", "tk", "td", "tr"))
        ]
        conn.execute(store.throttle.delete().where(store.throttle.c.dataset.in_(names)))
    for name in names:
        airflow_client.request("DELETE", f"/pools/flux_{name}")


def register(stack, airflow_client, dataset: str, slots: int, low: int = 1, high: int = 8) -> None:
    """A data set as a deploy job makes it: a spec with these bounds, then ``pools sync --reset`` (its pool at
    ``slots``, its throttle row with the bounds)."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from tests.support.specs import MINIMAL

    throttle = f'<throttle initial="{slots}" min="{low}" max="{high}"/>'
    with tempfile.TemporaryDirectory(prefix="flux-register-") as folder:
        (Path(folder) / f"{dataset}.xml").write_text(
            MINIMAL.format(name=dataset).replace("</schedule>", f"</schedule>\n  {throttle}")
        )
        subprocess.run(
            [sys.executable, "-m", "flux_provider.specs", "pools", "sync", "--reset", folder],
            env={**os.environ, "AIRFLOW_HOME": stack.env()["AIRFLOW_HOME"]},
            check=True,
            capture_output=True,
        )
    assert slots == airflow_client.request("GET", f"/pools/flux_{dataset}").json()["slots"]


def client_as(stack, user: str | None) -> httpx.Client:
    env = stack.env()
    client = httpx.Client(base_url=env["FLUX_AIRFLOW_URL"], timeout=30)
    if user:
        password = env["FLUX_AIRFLOW_PASSWORD"] if user == "admin" else env["FLUX_AIRFLOW_VIEWER_PASSWORD"]
        token = client.post("/auth/token", json={"username": user, "password": password}).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_reading_needs_login_and_changing_needs_pool_edit_permission(stack, airflow_client, unique):
    dataset = f"auth{unique[:6]}"
    register(stack, airflow_client, dataset, 3)
    anonymous, viewer, admin = client_as(stack, None), client_as(stack, "viewer"), client_as(stack, "admin")
    body = {"slots": 5, "pin": True, "reason": "test"}
    assert anonymous.get("/flux/api/datasets").status_code == 401
    assert anonymous.get("/flux/").status_code == 401
    assert anonymous.post(f"/flux/api/datasets/{dataset}/limit", json=body).status_code == 401
    assert viewer.get("/flux/api/datasets").status_code == 200
    assert viewer.post(f"/flux/api/datasets/{dataset}/limit", json=body).status_code == 403
    assert slots(airflow_client, dataset) == 3  # nothing changed
    response = admin.post(f"/flux/api/datasets/{dataset}/limit", json=body)
    assert response.status_code == 200, response.text
    assert slots(airflow_client, dataset) == 5
    assert admin.post(f"/flux/api/datasets/{dataset}/limit", json={"slots": -1}).status_code == 422
    assert admin.post("/flux/api/datasets/nope/limit", json=body).status_code == 404


def test_a_pin_holds_against_the_controller_and_every_change_is_recorded(stack, airflow_client, unique):
    dataset = f"pin{unique[:6]}"
    register(stack, airflow_client, dataset, 2, low=1, high=4)
    admin = client_as(stack, "admin")
    admin.post(f"/flux/api/datasets/{dataset}/limit", json={"slots": 7, "pin": True, "reason": "migration"})
    airflow_client.request(
        "PATCH", f"/pools/flux_{dataset}", json={"name": f"flux_{dataset}", "slots": 1, "include_deferred": False}
    )
    wait_until(  # the controller's next period puts the pin back
        lambda: [e for e in events(stack, dataset) if e["actor"] == "controller"],
        PERIOD * 4,
        lambda: events(stack, dataset),
        every=0.5,
    )
    assert slots(airflow_client, dataset) == 7  # the controller put the pin back, above the bounds even
    admin.post(f"/flux/api/datasets/{dataset}/limit", json={"slots": None, "pin": False})
    history = events(stack, dataset)
    assert [(e["old"], e["new"], e["actor"]) for e in history[:3]] == [
        (2, 7, "user admin"),
        (1, 7, "controller"),
        (7, 7, "user admin"),
    ]
    assert history[0]["reason"] == "pinned to 7 by user admin: migration"
    assert history[1]["reason"] == "pinned to 7" and history[2]["reason"].startswith("unpinned by user admin")
    assert all(isinstance(e["at"], dt.datetime) for e in history)


def outcomes_of(stack, dataset: str, run_id: str) -> list[dict]:
    """The tries of one run of ``dataset`` as the controller recorded them (its table; only it writes there)."""
    with stack_db(stack).connect() as conn:
        query = (
            select(store.outcomes)
            .where(and_(store.outcomes.c.dataset == dataset, store.outcomes.c.run_id == run_id))
            .order_by(store.outcomes.c.end_date, store.outcomes.c.task_id, store.outcomes.c.try_number)
        )
        return [dict(r) for r in conn.execute(query).mappings()]


def recorded(stack, dataset: str, run_id: str, count: int, timeout: float = PERIOD * 4) -> list[dict]:
    """Wait (polling) until the controller recorded ``count`` tries of ``dataset`` in ``run_id``."""
    deadline = time.monotonic() + timeout
    while len(rows := outcomes_of(stack, dataset, run_id)) < count and time.monotonic() < deadline:
        time.sleep(1)
    return rows


def prepare_signal_dag(stack, airflow_client) -> None:
    """flux_test_signal's source (two rows, no fault left from an earlier run) and its four data sets' pools
    at 1 slot; the source's first two tries fail: a deadlock victim, then a busy service."""
    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute("DROP TABLE IF EXISTS ts_src")
        conn.execute("DELETE FROM flux_faults WHERE pattern = 'ts_src'")
    seed_table(
        stack, "ts_src", rows=[(1, "a"), (2, "b")], ddl="CREATE TABLE dbo.{name} (id INT NOT NULL, v NVARCHAR(9))"
    )
    for dataset in ("ts", "tk", "td", "tl"):
        register(stack, airflow_client, dataset, 1)
    inject_fault(stack, "ts_src", error_number=1205, remaining=1)  # try 1: deadlock victim
    inject_fault(stack, "ts_src", error_number=40501, remaining=1)  # try 2: the service is busy


def test_each_try_is_recorded_once_with_its_own_class_message_and_load(stack, airflow_client):
    """Retries that start (and clear the XCom) before the controller's next period keep their own class
    and message; a try killed with SIGKILL is lost to the orchestrator: it never grows its pool, its try is
    given back, and the recovery rule does not count it; tasks that never ran are not recorded, even when a
    failed task is cleared with its downstream tasks."""
    prepare_signal_dag(stack, airflow_client)
    result = airflow_client.run_dag("flux_test_signal", timeout=300)
    assert result.task_states == {
        "retried": "success",
        "killed": "failed",
        "lost_once": "success",  # the rule's one retry was the deadlock's, not the lost try's
        "doomed": "failed",
        "after_doomed": "upstream_failed",
    }

    retried = recorded(stack, "ts", result.run_id, 3)
    # (task_instance_history keeps a retried try as "failed")
    assert [(r["try_number"], r["state"] != "success", r["error_class"]) for r in retried] == [
        (1, True, "deadlock"),
        (2, True, "throttled"),
        (3, False, None),
    ]
    assert "deadlock" in retried[0]["message"] and "busy" in retried[1]["message"]  # each its own message
    assert [r["inflight"] for r in retried] == [1, 1, 1]  # one try ran at a time, each counted once

    killed = recorded(stack, "tk", result.run_id, 1)
    assert [(r["try_number"], r["error_class"]) for r in killed] == [(1, "lost")]
    assert "lost to the orchestrator" in killed[0]["message"]
    lost_once = recorded(stack, "tl", result.run_id, 3)
    assert [(r["try_number"], r["error_class"]) for r in lost_once] == [(1, "lost"), (2, "deadlock"), (3, None)]
    with stack_db(stack).connect() as conn:
        given = conn.execute(
            select(store.lost.c.task_id, store.lost.c.try_number, store.lost.c.given_back).where(
                store.lost.c.run_id == result.run_id
            )
        ).all()
    assert sorted(given) == [("killed", 1, 0), ("lost_once", 1, 1)]  # killed had no retry left to give back
    deadline = time.monotonic() + PERIOD * 2
    while time.monotonic() < deadline:  # two more periods: a crash never grows the pool
        assert slots(airflow_client, "tk") == 1, events(stack, "tk")
        time.sleep(2)

    airflow_client.clear("flux_test_signal", result.run_id, "doomed")
    assert airflow_client.wait_for_run("flux_test_signal", result.run_id, timeout=300).state == "failed"
    doomed = recorded(stack, "td", result.run_id, 2)
    assert [(r["task_id"], r["try_number"], r["error_class"]) for r in doomed] == [
        ("doomed", 1, "missing_object"),
        ("doomed", 2, "missing_object"),
    ]


def test_tries_that_end_while_no_controller_runs_are_collected_by_the_next_one(stack, airflow_client):
    """The scheduler, and the controller inside it, stopped (SIGSTOP) while a try runs and ends (the API server
    records its end): a controller that starts afterwards, with nothing in memory, resumes from the last recorded
    try and collects it, though it ended more than a period before."""
    import psutil
    from sqlalchemy.orm import Session

    from flux_provider.throttle.controller import LEASE, Controller

    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute("DROP TABLE IF EXISTS tr_src")
        conn.execute("DELETE FROM flux_faults WHERE pattern = 'tr_src'")
    seed_table(stack, "tr_src", rows=[(1, "a")], ddl="CREATE TABLE dbo.{name} (id INT NOT NULL, v NVARCHAR(9))")
    register(stack, airflow_client, "tr", 2)
    first = airflow_client.run_dag("flux_test_resume", timeout=300)
    assert first.state == "success"
    assert len(recorded(stack, "tr", first.run_id, 1)) == 1  # the last recorded try: where a new controller resumes

    inject_fault(stack, "tr_src", remaining=1, delay_seconds=6)
    run_id = airflow_client.trigger("flux_test_resume")
    deadline = time.monotonic() + 120
    while airflow_client.task_states("flux_test_resume", run_id).get("resumed") != "running":
        assert time.monotonic() < deadline, airflow_client.task_states("flux_test_resume", run_id)
        time.sleep(0.5)
    scheduler = psutil.Process(stack.load_state()["processes"]["airflow-scheduler"]["pid"])
    scheduler.suspend()
    try:
        while airflow_client.task_states("flux_test_resume", run_id).get("resumed") != "success":
            assert time.monotonic() < deadline, "the try did not end while the scheduler was stopped"
            time.sleep(0.5)
        ended = time.monotonic()
        with Session(stack_db(stack)) as session:
            while not store.acquire_lease(session, LEASE, "test-successor", PERIOD * 3):  # the old one expires
                session.rollback()
                assert time.monotonic() < deadline + 60
                time.sleep(1)
            session.commit()
            while time.monotonic() - ended < PERIOD + 2:  # more than a period ago: not in a fresh window
                time.sleep(1)
            Controller(period=PERIOD, holder="test-successor").tick(session)
            store.release_lease(session, LEASE, "test-successor")
            session.commit()
    finally:
        scheduler.resume()
    rows = outcomes_of(stack, "tr", run_id)
    assert [(r["try_number"], r["state"]) for r in rows] == [(1, "success")]
    assert airflow_client.wait_for_run("flux_test_resume", run_id, timeout=120).state == "success"


def test_load_errors_shrink_only_that_data_sets_pool_and_it_grows_back(stack, airflow_client):
    """tx's source deadlocks (1205, load class) while ty's is healthy; then tx recovers."""
    for name in ("tx", "ty"):
        with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}_src")
            conn.execute("DELETE FROM flux_faults WHERE pattern IN ('tx_src', 'ty_src')")
        seed_table(
            stack,
            f"{name}_src",
            rows=[(i, f"row {i}") for i in range(20)],
            ddl="CREATE TABLE dbo.{name} (id INT NOT NULL, txt NVARCHAR(40))",
        )
        register(stack, airflow_client, name, 4)
    inject_fault(stack, "tx_src", error_number=1205, remaining=-1, delay_seconds=2)  # deadlock victims
    inject_fault(stack, "tx_src", remaining=-1, delay_seconds=3)  # once healed: slow
    inject_fault(stack, "ty_src", remaining=-1, delay_seconds=3)
    before = dt.datetime.now(dt.timezone.utc)
    failing = airflow_client.run_dag("flux_test_throttle", timeout=300)
    assert failing.task_states["tx0"] == "failed" and failing.task_states["ty0"] == "success"
    deadline = time.monotonic() + PERIOD * 4
    while slots(airflow_client, "tx") > 2 and time.monotonic() < deadline:
        time.sleep(2)
    shrunk = slots(airflow_client, "tx")
    assert shrunk <= 2, events(stack, "tx")  # halved (or more) within 4 controller periods of the failures
    assert slots(airflow_client, "ty") >= 4  # the healthy data set keeps its slots
    reasons = [e["reason"] for e in events(stack, "tx") if e["at"].replace(tzinfo=dt.timezone.utc) >= before]
    assert any("deadlock" in r for r in reasons), reasons
    with stack_db(stack).connect() as conn:
        classes = {
            r.error_class
            for r in conn.execute(select(store.outcomes.c.error_class).where(store.outcomes.c.dataset == "tx"))
        }
    assert "deadlock" in classes

    # the source heals: tx runs clean and its limit climbs back
    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute("UPDATE flux_faults SET remaining = 0 WHERE pattern = 'tx_src' AND error_number = 1205")
    deadline = time.monotonic() + 240
    runs = []
    while slots(airflow_client, "tx") <= shrunk and time.monotonic() < deadline:
        runs.append(airflow_client.run_dag("flux_test_throttle", timeout=300))
        assert runs[-1].state == "success"
    assert slots(airflow_client, "tx") > shrunk, events(stack, "tx")

    history = [e for e in events(stack, "tx") if e["at"].replace(tzinfo=dt.timezone.utc) >= before]
    for result in [failing, *runs]:
        tis = airflow_client.request(
            "GET", f"/dags/flux_test_throttle/dagRuns/{result.run_id}/taskInstances", params={"limit": 100}
        ).json()["task_instances"]
        concurrency_ok([t for t in tis if t["task_id"].startswith("tx")], history, 4)
    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute("DELETE FROM flux_faults WHERE pattern IN ('tx_src', 'ty_src')")


def test_a_rules_throttle_down_factor_sets_the_cut_under_the_real_scheduler(stack, airflow_client):
    """Six deadlocking exports whose rule fails them with <throttleDown factor="0.25"/>: the controller cuts
    the pool from 8 to 2 (8 x 0.25), where the default for so many failures would halve it to 4."""
    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute("DROP TABLE IF EXISTS tf_src")
        conn.execute("DELETE FROM flux_faults WHERE pattern = 'tf_src'")
    seed_table(
        stack,
        "tf_src",
        rows=[(i, f"row {i}") for i in range(5)],
        ddl="CREATE TABLE dbo.{name} (id INT NOT NULL, txt NVARCHAR(40))",
    )
    register(stack, airflow_client, "tf", 8)
    inject_fault(stack, "tf_src", error_number=1205, remaining=-1, delay_seconds=2)
    try:
        result = airflow_client.run_dag("flux_test_throttle_factor", timeout=300)
        assert set(result.task_states.values()) == {"failed"}
        deadline = time.monotonic() + PERIOD * 4
        while slots(airflow_client, "tf") == 8 and time.monotonic() < deadline:
            time.sleep(2)
        assert slots(airflow_client, "tf") == 2, events(stack, "tf")
        assert any("throttleDown x0.25" in e["reason"] for e in events(stack, "tf"))
    finally:
        with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
            conn.execute("DELETE FROM flux_faults WHERE pattern = 'tf_src'")


def test_the_cli_pins_sets_and_unpins_with_a_record(stack, airflow_client, unique):
    import os
    import subprocess
    import sys

    dataset = f"pincli{unique[:4]}"
    register(stack, airflow_client, dataset, 2, low=1, high=4)
    env = {**os.environ, "AIRFLOW_HOME": stack.env()["AIRFLOW_HOME"]}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "flux_provider.throttle", *args], env=env, capture_output=True, text=True
        )

    assert f"{dataset}: pool flux_{dataset} 2 -> 0 (pinned)" in cli("pin", dataset, "0", "--reason", "pause").stdout
    assert slots(airflow_client, dataset) == 0  # a pin of 0 pauses the data set
    refused = cli("set", dataset, "9")
    assert refused.returncode == 1 and "outside the data set's bounds 1-4" in refused.stderr
    assert cli("unpin", dataset).returncode == 0
    assert cli("set", dataset, "3").returncode == 0 and slots(airflow_client, dataset) == 3
    shown = cli("show").stdout
    assert re.search(rf"{dataset}\s+flux_{dataset}\s+3\s+-\s+1-4\s+\S+ \S+ set to 3 by cli", shown), shown
    by_cli = [e["reason"].split(" by ")[0] for e in events(stack, dataset) if e["actor"].startswith("cli")]
    assert by_cli == ["pinned to 0", "unpinned", "set to 3"]  # (the controller may lift 0 to the minimum between)


def crowded_report_source(stack) -> str:
    """report_src: 80 rows on a source with room for 2 queries, each holding the table 4 s, so a third is a
    deadlock victim after half its work. Returns the source's database."""
    db = stack.env()["FLUX_MSSQL_DB"]
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS report_src")
    seed_table(
        stack,
        "report_src",
        rows=[(i, f"row {i}") for i in range(80)],
        ddl="CREATE TABLE dbo.{name} (id INT NOT NULL, txt NVARCHAR(40))",
    )
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM flux_faults WHERE pattern = 'report_src'")
        conn.execute(
            "INSERT OR REPLACE INTO flux_capacity (pattern, capacity, slowdown_seconds, fail_excess, "
            "victim_after) VALUES ('report_src', 2, 0, 1, 0.5)"
        )
    inject_fault(stack, "report_src", remaining=-1, delay_seconds=4)  # each query holds the table 4 s
    return db


def test_an_adopted_pool_of_stock_operators_is_cut_and_grown_by_the_controller(stack, airflow_client):
    """dags/stock_reports.py: eight SQLExecuteQueryOperator tasks, nothing of flux's, in the pool stock_reports,
    adopted through the API. Above the source's capacity of 2 queries, pymssql raises the stand-in's deadlock
    victims (1205, after half their work); the pool's rule classes them, the controller cuts the pool; once the
    source has room, clean runs grow it back."""
    admin = client_as(stack, "admin")
    db = crowded_report_source(stack)
    with contextlib.suppress(AirflowApiError):  # an earlier run's pool
        airflow_client.request("DELETE", "/pools/stock_reports")
    airflow_client.request("POST", "/pools", json={"name": "stock_reports", "slots": 8})
    rule = 'deadlock: exception=OperationalError message="(?i)deadlock victim"'
    body = {"min": 1, "max": 8, "rules": [rule]}
    assert client_as(stack, "viewer").put("/flux/api/pools/stock_reports/adaptive", json=body).status_code == 403
    bad = admin.put("/flux/api/pools/stock_reports/adaptive", json={**body, "rules": ["slow: message=x"]})
    assert bad.status_code == 422 and "start with an error class" in bad.text
    adopted = admin.put("/flux/api/pools/stock_reports/adaptive", json=body)
    assert adopted.status_code == 200, adopted.text
    pool = lambda: airflow_client.request("GET", "/pools/stock_reports").json()["slots"]  # noqa: E731
    try:
        before = dt.datetime.now(dt.timezone.utc)
        first = airflow_client.run_dag("stock_reports", timeout=300)
        cut = wait_until(lambda: (n := pool()) < 8 and n, PERIOD * 4, lambda: events(stack, "stock_reports"), every=2)
        with stack_db(stack).connect() as conn:
            failed = conn.execute(
                select(store.outcomes.c.error_class, store.outcomes.c.rule).where(
                    and_(store.outcomes.c.run_id == first.run_id, store.outcomes.c.state != "success")
                )
            ).all()
        # Every victim the controller saw is classed by the pool's rule. On a loaded host a period can outlast
        # the retry delay, and the next try clears the record first: that try counts as lost (stock_reports.py).
        classed = set(failed) - {("lost", None)}
        assert classed == {("deadlock", rule)}, failed
        history = [e for e in events(stack, "stock_reports") if e["at"].replace(tzinfo=dt.timezone.utc) >= before]
        assert any("deadlock" in e["reason"] for e in history), history

        with sqlite3.connect(db) as conn:  # the source has room now
            conn.execute("UPDATE flux_capacity SET capacity = 16 WHERE pattern = 'report_src'")
        deadline = time.monotonic() + 240
        while pool() <= cut and time.monotonic() < deadline:
            assert airflow_client.run_dag("stock_reports", timeout=300).state == "success"
        assert pool() > cut, events(stack, "stock_reports")
    finally:
        assert admin.delete("/flux/api/pools/stock_reports/adaptive").status_code == 200
        airflow_client.request("DELETE", "/pools/stock_reports")
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM flux_capacity WHERE pattern = 'report_src'")
            conn.execute("DELETE FROM flux_faults WHERE pattern = 'report_src'")
