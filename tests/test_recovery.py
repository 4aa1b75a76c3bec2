"""Recovery rules: the decision per failure (pure), and the one mechanism every flux operator uses."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from flux_provider.errors import ErrorClass, FluxTerminalError, FluxTransientError
from flux_provider.recovery import Action, Match, Recovery, RecoveryPolicy, Rule


def report(error_class="deadlock", number=None, exit_code=None, step="export", message="x", terminal=False):
    return {
        "error_class": error_class,
        "server_number": number,
        "exit_code": exit_code,
        "step": step,
        "message": message,
        "terminal": terminal,
        "dataset": "ds",
    }


RULES = (
    Rule(
        Match(number=1205),
        (
            Action("retry", {"count": 3, "delaySeconds": 20, "backoff": 2, "maxDelaySeconds": 50}),
            Action("throttle_down", {"factor": 0.5}),
        ),
        name="deadlock",
    ),
    Rule(Match(error_class="connection", step="upload"), (Action("retry", {"count": 10, "delaySeconds": 60}),)),
    Rule(Match(message=r"Invalid object name 'dbo\.tmp_"), (Action("skip", {"reason": "scratch table gone"}),)),
    Rule(Match(exit_code=137), (Action("fail"), Action("alert"))),
    Rule(Match(error_class="login"), (Action("retry", {"count": 1, "delaySeconds": 300}), Action("alert"))),
)


@pytest.mark.parametrize(
    "failure, try_number, expected",
    [
        (report(number=1205), 1, ("retry", "deadlock", 20.0, False, 0.5)),
        (report(number=1205), 2, ("retry", "deadlock", 40.0, False, 0.5)),
        (report(number=1205), 3, ("retry", "deadlock", 50.0, False, 0.5)),  # capped by maxDelaySeconds
        (report(number=1205), 4, ("fail", "deadlock", None, False, 0.5)),  # 3 retries used
        (report("connection", step="upload"), 7, ("retry", "rule 2", 60.0, False, None)),
        (
            report("connection", step="export"),
            1,
            ("retry", "default: 5 retries a minute apart, then fail and alert", 60.0, False, None),
        ),  # rule 2 is for uploads only
        (
            report("connection", step="export"),
            6,
            ("fail", "default: 5 retries a minute apart, then fail and alert", None, True, None),
        ),
        (
            report("missing_object", message="Invalid object name 'dbo.tmp_x'.", terminal=True),
            1,
            ("skip", "rule 3", None, False, None),
        ),
        (report("unknown", exit_code=137), 1, ("fail", "rule 4", None, True, None)),
        (report("syntax", terminal=True), 1, ("fail", "default", None, True, None)),  # terminal: fail fast
        (report("login", terminal=True), 1, ("retry", "rule 5", 300.0, True, None)),  # a rule may retry one
    ],
)
def test_first_matching_rule_decides(failure, try_number, expected):
    outcome = Recovery(rules=RULES).decide(failure, try_number)
    assert (outcome.kind, outcome.rule, outcome.delay, outcome.alert, outcome.throttle_down) == expected


def test_jitter_stays_within_20_percent():
    rules = (Rule(Match(), (Action("retry", {"count": 9, "delaySeconds": 100, "jitter": True}),)),)
    delays = {Recovery(rules=rules, rng=random.Random(seed)).decide(report(), 1).delay for seed in range(50)}
    assert len(delays) > 10 and all(80 <= d <= 120 for d in delays)


def test_retries_allow_the_largest_rule():
    assert Recovery(rules=RULES).max_retries == 10 and Recovery().max_retries == 5


def test_the_retry_policy_answers_from_the_same_decision():
    from airflow.sdk.definitions.retry_policy import RetryAction

    policy = RecoveryPolicy(Recovery(rules=RULES))
    exc = FluxTransientError("boom", error_class=ErrorClass.DEADLOCK, server_number=1205, step="export")
    decision = policy.evaluate(exc, try_number=2, max_tries=10)
    assert decision.action is RetryAction.RETRY and decision.retry_delay.total_seconds() == 40
    assert "deadlock: retry 2/3" in decision.reason
    assert policy.evaluate(exc, try_number=4, max_tries=10).action is RetryAction.FAIL


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_operator_failure_goes_through_the_rules_with_alert_and_record(tmp_path):
    """The mechanism inside execute(), with a real webhook receiver (no Airflow needed)."""
    from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator

    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    rules = (Rule(Match(error_class="config"), (Action("fail"), Action("alert"))),)
    op = S3ChunkUploadOperator(
        task_id="upload", dataset="titles", s3_location="s3://flux/x", recovery=Recovery(rules=rules, webhooks=[url])
    )
    pushed = {}
    ti = SimpleNamespace(
        try_number=1,
        dag_id="flux_titles",
        run_id="r1",
        task_id="upload",
        log_url="http://log/1",
        xcom_push=lambda key, value: pushed.update({key: value}),
        xcom_pull=lambda task_ids=None: None,
    )
    with pytest.raises(FluxTerminalError) as failure:
        op.execute({"ti": ti})
    server.shutdown()
    assert failure.value.flux_outcome.kind == "fail"
    assert pushed["flux_error"]["error_class"] == "config"
    assert pushed["flux_error"]["recovery"]["rule"] == "rule 1"
    [alert] = _Receiver.received
    assert (alert["dataset"], alert["step"], alert["error_class"], alert["log_url"]) == (
        "titles",
        "upload",
        "config",
        "http://log/1",
    )
    assert alert["action"] == "fail" and "no export to upload" in alert["message"]


@pytest.mark.stack
def test_rules_under_the_real_scheduler_retry_with_backoff_alert_and_skip(stack, airflow_client):
    import datetime as dt
    import sqlite3

    from tests.test_bcp_export import inject_fault, seed_table

    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute("DROP TABLE IF EXISTS rec_src")
    seed_table(
        stack, "rec_src", rows=[(1, "a"), (2, "b")], ddl="CREATE TABLE dbo.{name} (id INT NOT NULL, v NVARCHAR(9))"
    )
    inject_fault(stack, "rec_src", error_number=1205, remaining=2)  # the first two tries are deadlock victims
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        airflow_client.request(
            "POST",
            "/variables",
            json={"key": "flux_test_webhook", "value": f"http://127.0.0.1:{server.server_port}/hook"},
        )
    except Exception:
        airflow_client.request(
            "PATCH",
            "/variables/flux_test_webhook",
            json={"key": "flux_test_webhook", "value": f"http://127.0.0.1:{server.server_port}/hook"},
        )
    try:
        result = airflow_client.run_dag("flux_test_recovery", timeout=300)
    finally:
        server.shutdown()
    assert result.task_states == {"deadlock": "success", "alert_fail": "failed", "skipped": "skipped"}

    def tries(task):
        return airflow_client.request(
            "GET", f"/dags/flux_test_recovery/dagRuns/{result.run_id}/taskInstances/{task}/tries"
        ).json()["task_instances"]

    deadlock = sorted(tries("deadlock"), key=lambda t: t["try_number"])
    assert [t["state"] for t in deadlock] == ["failed", "failed", "success"]  # history keeps failed tries
    for (earlier, later), delay in zip(zip(deadlock, deadlock[1:]), (3, 6)):
        waited = dt.datetime.fromisoformat(later["start_date"]) - dt.datetime.fromisoformat(earlier["end_date"])
        assert delay <= waited.total_seconds() < delay + 15, (delay, waited)  # the rule's backoff, not Airflow's

    assert [t["try_number"] for t in tries("alert_fail")] == [1]  # fail fast
    [alert] = _Receiver.received
    assert (alert["dataset"], alert["step"], alert["error_class"], alert["rule"]) == (
        "rec",
        "export",
        "missing_object",
        "gone",
    )
    assert alert["log_url"] and result.run_id in alert["run_id"]

    log = airflow_client.request(
        "GET", f"/dags/flux_test_recovery/dagRuns/{result.run_id}/taskInstances/skipped/logs/1"
    ).json()
    assert "rec_gone is rebuilt on Sundays" in json.dumps(log)


def _pipeline_source(stack, seed: int) -> dict:
    """Fill dbo.pipeline_src (the flux_test_pipeline DAG's source); returns the expected daily sums."""
    import sqlite3
    from decimal import Decimal

    from tests.test_bcp_export import seed_table

    rng = random.Random(seed)
    rows = [(i, rng.choice(["2026-04-01", "2026-04-02"]), f"{rng.randint(0, 99999) / 100:.2f}") for i in range(200)]
    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute("DROP TABLE IF EXISTS pipeline_src")
    seed_table(
        stack,
        "pipeline_src",
        rows=rows,
        ddl="CREATE TABLE dbo.{name} (id INT NOT NULL, day DATE NOT NULL, minutes DECIMAL(9,2))",
    )
    expected: dict = {}
    for _, day, minutes in rows:
        count, total = expected.get(day, (0, Decimal(0)))
        expected[day] = (count + 1, total + Decimal(minutes))
    return expected


def _hive_daily(days) -> dict:
    from tests.test_hive_transform import records

    got = {r[0]: (r[1], r[2]) for r in records("SELECT day, sessions, minutes FROM flux_it.pipeline_daily")}
    return {d: got.get(d) for d in days}


def _clear(airflow_client, run_id: str, task_id: str):
    airflow_client.request(
        "POST",
        "/dags/flux_test_pipeline/clearTaskInstances",
        json={
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [task_id],
            "include_downstream": True,
            "only_failed": False,
            "reset_dag_runs": True,
        },
    )
    return airflow_client.wait_for_run("flux_test_pipeline", run_id, timeout=600)


@pytest.mark.stack
def test_manual_recovery_pause_resume_and_rerun_from_the_failed_step(stack, airflow_client):
    """Pause the data set (DAG paused), resume; a failed export, upload, transform and refresh, each fixed
    and rerun from that step with Airflow's clear: the Hive result is exact every time."""
    import time

    from tests.test_bcp_export import inject_fault

    expected = _pipeline_source(stack, seed=11)
    airflow_client.wait_for_dag("flux_test_pipeline")
    airflow_client.request("PATCH", "/dags/flux_test_pipeline", json={"is_paused": True})
    run_id = airflow_client.request("POST", "/dags/flux_test_pipeline/dagRuns", json={"logical_date": None}).json()[
        "dag_run_id"
    ]
    inject_fault(stack, "pipeline_src", error_number=208, remaining=1)  # the export's data query fails once
    time.sleep(12)
    assert set(airflow_client.task_states("flux_test_pipeline", run_id).values()) <= {None, "scheduled", "queued"}
    airflow_client.request("PATCH", "/dags/flux_test_pipeline", json={"is_paused": False})  # resume
    failed = airflow_client.wait_for_run("flux_test_pipeline", run_id, timeout=300)
    assert failed.state == "failed" and failed.task_states["export"] == "failed"
    assert failed.task_states["upload"] == "upstream_failed"
    rerun = _clear(airflow_client, run_id, "export")
    assert rerun.state == "success", rerun.task_states
    assert _hive_daily(expected) == expected

    # each later step breaks (a bad setting or deploy), is fixed, and only it and what follows run again
    for seed, (step, variable, value) in enumerate(
        [
            ("upload", "flux_pipeline_bucket", "no-such-bucket"),  # NoSuchBucket: missing_object
            ("transform", "flux_fail_transform", "1"),  # CAST_INVALID_INPUT: data
            ("refresh", "flux_refresh_reference", "not-a-date"),
        ],
        start=12,
    ):  # config
        expected = _pipeline_source(stack, seed=seed)
        airflow_client.request("POST", "/variables", json={"key": variable, "value": value})
        try:
            broken = airflow_client.run_dag("flux_test_pipeline", timeout=300)
        finally:
            airflow_client.request("DELETE", f"/variables/{variable}")
        assert broken.task_states[step] == "failed", (step, broken.task_states)
        tries = airflow_client.request(
            "GET", f"/dags/flux_test_pipeline/dagRuns/{broken.run_id}/taskInstances/{step}/tries"
        ).json()["task_instances"]
        assert len(tries) == 1  # a terminal class: the default rules fail it at once
        fixed = _clear(airflow_client, broken.run_id, step)
        assert fixed.state == "success", (step, fixed.task_states)
        assert _hive_daily(expected) == expected, step


@pytest.mark.stack
def test_s3_down_during_upload_is_retried_by_airflow_and_succeeds_once_back(stack, airflow_client, tmp_path):
    import sqlite3
    import time

    from flux_provider.devstack import Stack
    from flux_provider.devstack.s3 import SeaweedS3
    from tests.test_bcp_export import seed_table

    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute("DROP TABLE IF EXISTS outage_src")
    seed_table(
        stack,
        "outage_src",
        rows=[(i, f"v{i}") for i in range(500)],
        ddl="CREATE TABLE dbo.{name} (id INT NOT NULL, v NVARCHAR(9))",
    )
    private = Stack(run_dir=tmp_path / "s3", dags_folder=tmp_path, services=[SeaweedS3()], echo=lambda _: None)

    def point_connection_at_private() -> None:
        conn = json.loads(private.env()["AIRFLOW_CONN_AWS_DEFAULT"])
        body = {
            "connection_id": "flux_test_private_s3",
            "conn_type": "aws",
            "login": conn["login"],
            "password": conn["password"],
            "extra": json.dumps(conn["extra"]),
        }
        try:
            airflow_client.request("POST", "/connections", json=body)
        except Exception:
            airflow_client.request("PATCH", "/connections/flux_test_private_s3", json=body)

    try:
        private.up()
        point_connection_at_private()
        private.down()  # S3 is down when the upload starts
        airflow_client.wait_for_dag("flux_test_s3_outage")
        run_id = airflow_client.trigger("flux_test_s3_outage")
        deadline = time.monotonic() + 180
        while airflow_client.task_states("flux_test_s3_outage", run_id).get("upload") != "up_for_retry":
            assert time.monotonic() < deadline, airflow_client.task_states("flux_test_s3_outage", run_id)
            time.sleep(1)
        private.up()  # back (on new ports: the connection follows)
        point_connection_at_private()
        result = airflow_client.wait_for_run("flux_test_s3_outage", run_id, timeout=300)
        assert result.state == "success", result.task_states
        tries = airflow_client.request(
            "GET", f"/dags/flux_test_s3_outage/dagRuns/{run_id}/taskInstances/upload/tries"
        ).json()["task_instances"]
        assert [t["state"] for t in sorted(tries, key=lambda t: t["try_number"])] == ["failed", "success"]
        log = airflow_client.request(
            "GET", f"/dags/flux_test_s3_outage/dagRuns/{run_id}/taskInstances/upload/logs/1"
        ).json()
        assert "[connection]" in json.dumps(log) and "s3 down" in json.dumps(log)
        assert airflow_client.xcom("flux_test_s3_outage", run_id, "upload")["rows"] == 500
    finally:
        private.down()


def test_retries_come_from_the_rules_unless_the_dag_or_task_sets_them():
    import pendulum
    from airflow.sdk import DAG

    from flux_provider.operators.bcp_export import BcpExportOperator

    rules = Recovery(rules=RULES)
    with DAG("r1", schedule=None, start_date=pendulum.datetime(2026, 1, 1), default_args={"retries": 0}):
        capped = BcpExportOperator(task_id="a", dataset="d", schema="dbo", table="t", recovery=rules)
    with DAG("r2", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
        ruled = BcpExportOperator(task_id="b", dataset="d", schema="dbo", table="t", recovery=rules)
        default = BcpExportOperator(task_id="c", dataset="d", schema="dbo", table="t")
        explicit = BcpExportOperator(task_id="e", dataset="d", schema="dbo", table="t", retries=2)
    assert (capped.retries, ruled.retries, default.retries, explicit.retries) == (0, 10, 5, 2)
    assert isinstance(ruled.retry_policy, RecoveryPolicy)


def test_a_try_killed_outside_the_rules_waits_the_documented_minute():
    """A try killed by a signal or the OOM killer never reaches the rules: Airflow's own retry_delay
    applies, so flux operators set it to the default rule's minute (Airflow's default is 300 s)."""
    import datetime as dt

    import pendulum
    from airflow.sdk import DAG

    from flux_provider.operators.bcp_export import BcpExportOperator

    with DAG("r3", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
        default = BcpExportOperator(task_id="a", dataset="d", schema="dbo", table="t")
    with DAG(
        "r4",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1),
        default_args={"retry_delay": dt.timedelta(seconds=7)},
    ):
        chosen = BcpExportOperator(task_id="b", dataset="d", schema="dbo", table="t")
    assert (default.retry_delay, chosen.retry_delay) == (dt.timedelta(seconds=60), dt.timedelta(seconds=7))
