"""Recovery rules under the real scheduler: retries with backoff, alerts, skips, manual recovery, S3 down."""

from __future__ import annotations

import json
import random

import pytest

from tests.support.stack import inject_fault, records, seed_table, wait_scheduler_loops


@pytest.mark.stack
def test_rules_under_the_real_scheduler_retry_with_backoff_alert_and_skip(stack, airflow_client, webhook):
    import datetime as dt
    import sqlite3

    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute("DROP TABLE IF EXISTS rec_src")
    seed_table(
        stack, "rec_src", rows=[(1, "a"), (2, "b")], ddl="CREATE TABLE dbo.{name} (id INT NOT NULL, v NVARCHAR(9))"
    )
    inject_fault(stack, "rec_src", error_number=1205, remaining=2)  # the first two tries are deadlock victims
    try:
        airflow_client.request(
            "POST",
            "/variables",
            json={"key": "flux_test_webhook", "value": webhook.url},
        )
    except Exception:
        airflow_client.request(
            "PATCH",
            "/variables/flux_test_webhook",
            json={"key": "flux_test_webhook", "value": webhook.url},
        )
    result = airflow_client.run_dag("flux_test_recovery", timeout=300)
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
    [alert] = webhook.received
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

    got = {r[0]: (r[1], r[2]) for r in records("SELECT day, sessions, minutes FROM flux_it.pipeline_daily")}
    return {d: got.get(d) for d in days}


def _clear(airflow_client, run_id: str, task_id: str):
    airflow_client.clear("flux_test_pipeline", run_id, task_id)
    return airflow_client.wait_for_run("flux_test_pipeline", run_id, timeout=600)


@pytest.mark.stack
def test_manual_recovery_pause_resume_and_rerun_from_the_failed_step(stack, airflow_client):
    """Pause the data set (DAG paused), resume; a failed export, upload, transform and refresh, each fixed
    and rerun from that step with Airflow's clear: the Hive result is exact every time."""

    expected = _pipeline_source(stack, seed=11)
    airflow_client.wait_for_dag("flux_test_pipeline")
    airflow_client.request("PATCH", "/dags/flux_test_pipeline", json={"is_paused": True})
    run_id = airflow_client.request("POST", "/dags/flux_test_pipeline/dagRuns", json={"logical_date": None}).json()[
        "dag_run_id"
    ]
    inject_fault(stack, "pipeline_src", error_number=208, remaining=1)  # the export's data query fails once
    wait_scheduler_loops(stack, 2)  # the scheduler looked at the paused run twice and started nothing
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

    from flux_devstack import Stack
    from flux_devstack.s3 import SeaweedS3

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
