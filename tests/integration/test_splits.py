"""Split exports on the stack: parts as mapped tasks under the real scheduler, one publish per run, exact rows.

The source is the SQL Server stand-in (real freebcp and pymssql over TDS); the data sets are
``tests/dags/specs/split_*.xml``, all over ``dbo.split_src`` (nullable keys, nine days, hostile text).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from flux_provider import splits
from flux_provider.handoffs import TransformResult, UploadResult
from flux_provider.hooks.s3_chunk_upload import run_key_for
from flux_provider.run_report import stage_rows
from tests.support import REPO
from tests.support.stack import inject_fault, pools_sync, read_published, records, s3
from tests.support.values import VALUES

pytestmark = pytest.mark.stack

DDL = "CREATE TABLE dbo.split_src (k BIGINT, at DATETIME2(3) NOT NULL, txt NVARCHAR(200))"
FIRST_DAY, DAYS = dt.datetime(2026, 3, 1), 9
TEXTS = [v for v in VALUES if v is None or "\x00" not in v]  # NUL inside NVARCHAR: bcp's own marker


def source_rows(count: int = 3000) -> list[tuple]:
    rows = []
    for i in range(1, count + 1):
        at = FIRST_DAY + dt.timedelta(seconds=i * DAYS * 86_400 // (count + 1))
        rows.append((None if i % 97 == 0 else i, at.isoformat(" ", "milliseconds"), TEXTS[i % len(TEXTS)]))
    return rows


@pytest.fixture(scope="module")
def source(stack) -> list[tuple]:

    from flux_devstack.tds.seed import load_seed

    # the split data sets' pools and bounds as their specs say now (a reused stack may hold older ones)
    pools_sync(stack, REPO / "tests" / "dags", "--reset")
    db = Path(stack.env()["FLUX_MSSQL_DB"])
    rows = source_rows()
    load_seed(db, f"DROP TABLE IF EXISTS dbo.split_src;\n{DDL};")
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO split_src VALUES (?, ?, ?)", rows)
    return rows


def clear_faults(stack) -> None:
    with sqlite3.connect(stack.env()["FLUX_MSSQL_DB"]) as conn:
        conn.execute("DELETE FROM flux_faults")


def parts_of(client, dag_id: str, run_id: str) -> dict[str, dict]:
    """The mapped export tasks of a run by their part name (Airflow's rendered map index)."""
    items = client.request(
        "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"task_id_pattern": "export_upload"}
    ).json()["task_instances"]
    return {ti["rendered_map_index"]: ti for ti in items if ti["task_id"] == "export_upload"}


def published(location: str) -> tuple[dict, dict]:
    return read_published(s3(), "flux", location)


def pointer_or_none(location: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return published(location)[0]
    except ClientError:
        return None


def by_key(rows) -> list[tuple]:
    return sorted(rows, key=lambda r: (r[0] is None, r[0] or 0, r[1] is None, r[1] or ""))


def test_a_key_range_split_runs_its_parts_in_the_pool_and_loads_every_row_once(stack, airflow_client, source):
    """4 key ranges + the NULL keys' part; a deadlock on one part retries that part alone."""
    clear_faults(stack)
    inject_fault(stack, "[k] IS NULL", error_number=1205, remaining=1)  # the NULL part's first try
    run = airflow_client.run_dag("flux_split_keys")
    assert run.state == "success", run.task_states
    parts = parts_of(airflow_client, "flux_split_keys", run.run_id)
    assert sorted(parts) == ["p00", "p01", "p02", "p03", "pnull"]
    assert all(ti["pool"] == "flux_split_keys" for ti in parts.values())
    assert {name: ti["try_number"] for name, ti in parts.items()} == {
        "p00": 1,
        "p01": 1,
        "p02": 1,
        "p03": 1,
        "pnull": 2,
    }

    pointer, manifest = published("tests/split_keys")
    assert pointer["manifest"] == manifest["prefix"] + "_manifest.json"
    assert f"/runs/{run_key_for(run.run_id)}/" in manifest["prefix"]
    per_part = {p["part"]: p["rows"] for p in manifest["parts"]}
    assert per_part["pnull"] == sum(1 for k, _, _ in source if k is None)
    assert sum(per_part.values()) == manifest["rows"] == len(source)
    assert {c["key"].rsplit("/", 1)[1].split("-")[0] for c in manifest["chunks"]} == set(per_part)

    loaded = records("SELECT k, txt FROM flux_tests.split_keys")
    assert by_key(loaded) == by_key([(k, txt) for k, _, txt in source])  # exact, hostile text and NULLs included
    rows = stage_rows(lambda task: airflow_client.xcom("flux_split_keys", run.run_id, task))
    assert rows["reconciled"] and rows["exported"] == rows["staged"] == len(source)
    assert sorted(p["part"] for p in rows["parts"]) == sorted(per_part)


def test_a_failed_part_publishes_nothing_and_its_rerun_keeps_the_other_parts(stack, airflow_client, source):
    clear_faults(stack)
    before, _ = published("tests/split_keys")
    keys = [k for k, _, _ in source if k is not None]
    second = splits.integer_bounds(min(keys), max(keys), 4)[0]
    inject_fault(stack, f"[k] >= {second} AND", error_number=208, remaining=-1)  # part p01: a terminal error
    run = airflow_client.run_dag("flux_split_keys")
    assert run.state == "failed"
    parts = parts_of(airflow_client, "flux_split_keys", run.run_id)
    assert parts["p01"]["state"] == "failed" and parts["p01"]["try_number"] == 1  # terminal: not retried
    others = ["p00", "p02", "p03", "pnull"]
    assert {n: t["state"] for n, t in parts.items() if n != "p01"} == dict.fromkeys(others, "success")
    assert run.task_states["publish"] == "upstream_failed"
    assert published("tests/split_keys")[0] == before  # nothing published

    clear_faults(stack)
    airflow_client.request(
        "POST",
        "/dags/flux_split_keys/clearTaskInstances",
        json={
            "dry_run": False,
            "dag_run_id": run.run_id,
            "task_ids": [["export_upload", parts["p01"]["map_index"]]],
            "include_downstream": True,
            "only_failed": False,
        },
    )
    rerun = airflow_client.wait_for_run("flux_split_keys", run.run_id)
    assert rerun.state == "success", rerun.task_states
    after = parts_of(airflow_client, "flux_split_keys", run.run_id)
    assert after["p01"]["try_number"] == 2
    assert {n: t["try_number"] for n, t in after.items() if n != "p01"} == dict.fromkeys(others, 1)  # not rerun
    pointer, manifest = published("tests/split_keys")
    assert pointer["prefix"] != before["prefix"] and manifest["rows"] == len(source)
    assert by_key(records("SELECT k, txt FROM flux_tests.split_keys")) == by_key([(k, t) for k, _, t in source])


def test_a_time_split_needs_a_data_interval(stack, airflow_client, source):
    clear_faults(stack)
    without = airflow_client.run_dag("flux_split_days")  # no logical date: no interval to export
    assert without.state == "failed" and without.task_states["plan"] == "failed"
    assert without.task_states["publish"] == "upstream_failed"
    # nothing of it was uploaded or published (the scheduler's own run of the latest interval may publish)
    mine = f"tests/split_days/runs/{run_key_for(without.run_id)}"
    assert s3().list_objects_v2(Bucket="flux", Prefix=mine).get("KeyCount", 0) == 0
    pointer = pointer_or_none("tests/split_days")
    assert pointer is None or not pointer["prefix"].startswith(mine)


def rows_per_day(source, start: str, end: str) -> dict[str, int]:
    days: dict[str, int] = {}
    for _, at, _ in source:
        if start <= at[:10] < end:
            days[at[:10]] = days.get(at[:10], 0) + 1
    return days


def test_several_runs_of_a_data_set_load_at_once_each_through_its_own_staging(stack, airflow_client, source):
    """A catch-up of three intervals (maxActiveRuns=3): the runs overlap, their parts never hold more than the
    pool's 3 slots together, each reconciles through its own staging view, and the pointer ends at the newest
    day whichever run finishes last."""
    clear_faults(stack)
    dag_id = "flux_split_days"
    airflow_client.wait_for_dag(dag_id)
    logical = ["2026-03-10T00:00:00Z", "2026-03-07T00:00:00Z", "2026-03-04T00:00:00Z"]  # the newest first
    for old in airflow_client.request("GET", f"/dags/{dag_id}/dagRuns").json()["dag_runs"]:
        airflow_client.wait_for_run(dag_id, old["dag_run_id"])  # e.g. the scheduler's own run of the latest interval
        if (old["logical_date"] or "").replace("+00:00", "Z")[:19] in {d[:19] for d in logical}:  # a rerun of the suite
            airflow_client.request("DELETE", f"/dags/{dag_id}/dagRuns/{old['dag_run_id']}")
    run_ids = [airflow_client.trigger(dag_id, logical_date=date) for date in logical]
    results = [airflow_client.wait_for_run(dag_id, run_id) for run_id in run_ids]
    assert [r.state for r in results] == ["success"] * 3, [r.task_states for r in results]

    runs = [airflow_client.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json() for run_id in run_ids]
    assert max(r["start_date"] for r in runs) < min(r["end_date"] for r in runs)  # all three were running at once
    spans = [
        (dt.datetime.fromisoformat(ti["start_date"]), dt.datetime.fromisoformat(ti["end_date"]))
        for run_id in run_ids
        for ti in parts_of(airflow_client, dag_id, run_id).values()
    ]
    assert len(spans) == 9  # one part per day of each run's interval
    assert sorted(parts_of(airflow_client, dag_id, run_ids[-1])) == ["p00", "p01", "p02"]
    assert max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans) <= 3  # the pool's slots

    assert dict(records("SELECT day, COUNT(*) FROM flux_tests.split_days GROUP BY day")) == rows_per_day(
        source, "2026-03-01", "2026-03-10"
    )
    for run_id, start in zip(run_ids, ("2026-03-07", "2026-03-04", "2026-03-01")):
        end = (dt.date.fromisoformat(start) + dt.timedelta(days=3)).isoformat()
        transform = TransformResult.from_json(airflow_client.xcom(dag_id, run_id, "transform"))
        interval_rows = sum(rows_per_day(source, start, end).values())  # its own staging, not another run's
        assert transform.manifest_rows == transform.staging_rows == transform.target_rows == interval_rows
    # the pointer: at the newest day any run published, whichever finished last (the scheduler's own run of
    # the latest interval, created when the DAG was unpaused, loads a newer, empty day)
    every_run = airflow_client.request("GET", f"/dags/{dag_id}/dagRuns").json()["dag_runs"]
    finished = [airflow_client.wait_for_run(dag_id, r["dag_run_id"]) for r in every_run]
    days = [r["data_interval_start"][:10] for r, f in zip(every_run, finished) if f.state == "success"]
    assert published("tests/split_days")[0]["day"] == max(days)
    newest = rows_per_day(source, "2026-03-07", "2026-03-10")
    publish = UploadResult.from_json(airflow_client.xcom(dag_id, run_ids[0], "publish"))
    manifest = json.loads(s3().get_object(Bucket=publish.bucket, Key=publish.manifest)["Body"].read())
    assert manifest["day"] == "2026-03-07"
    assert [p["rows"] for p in manifest["parts"]] == [newest[d] for d in sorted(newest)]


def test_named_queries_are_parts_checked_against_the_count(stack, airflow_client, source):
    clear_faults(stack)
    run = airflow_client.run_dag("flux_split_queries")
    assert run.state == "success", run.task_states
    assert sorted(parts_of(airflow_client, "flux_split_queries", run.run_id)) == ["high", "low", "nokey"]
    assert by_key(records("SELECT k, txt FROM flux_tests.split_queries")) == by_key([(k, t) for k, _, t in source])


# ------------------------------------------------------------------ bad input, through the operators
def context(run_id: str, plan: list | None = None) -> dict:
    ti = SimpleNamespace(run_id=run_id, try_number=1, map_index=-1, xcom_pull=lambda task_ids: plan)
    return {"ti": ti}


def plan_error(unique, **kwargs) -> str:
    from flux_provider.errors import FluxError
    from flux_provider.operators.split_plan import SplitPlanOperator

    plan = SplitPlanOperator(
        task_id="plan", dataset="bad", s3_location=f"s3://flux/tests/{unique}/bad", schema="dbo", **kwargs
    )
    with pytest.raises(FluxError) as failure:
        plan.execute(context(f"run_{unique}"))
    assert failure.value.error_class.value == "config" and failure.value.terminal
    return str(failure.value)


def test_a_split_column_that_is_missing_or_not_a_key_is_a_clear_error(stack, source, unique):
    missing = plan_error(unique, table="split_src", column="nope", parts=4)
    assert "the split column 'nope' is not a column of split_src" in missing and "<split column=...>" in missing
    text = plan_error(unique, table="split_src", column="txt", parts=4)
    assert "the split column 'txt' is nvarchar(200): a key-range split needs an integer" in text


def test_overlapping_named_queries_fail_at_publish_and_publish_nothing(stack, source, unique):
    from flux_provider.errors import FluxError
    from flux_provider.operators.bcp_to_s3 import BcpToS3Operator
    from flux_provider.operators.publish_run import PublishRunOperator
    from flux_provider.operators.split_plan import SplitPlanOperator

    location = f"s3://flux/tests/{unique}/overlap"
    queries = [
        ("a", "SELECT k, txt FROM dbo.split_src WHERE k < 2000"),
        ("b", "SELECT k, txt FROM dbo.split_src WHERE k >= 1000"),  # 1000..1999 twice, NULL keys never
    ]
    run_id = f"run_{unique}"
    plan = SplitPlanOperator(task_id="plan", dataset="overlap", s3_location=location, queries=queries).execute(
        context(run_id)
    )
    for index, part in enumerate(plan):
        export = BcpToS3Operator(task_id="export_upload", dataset="overlap", s3_location=location, part=part)
        ctx = context(run_id)
        ctx["ti"].map_index = index
        export.execute(ctx)
    publish = PublishRunOperator(
        task_id="publish", dataset="overlap", s3_location=location, count_sql="SELECT COUNT(*) FROM dbo.split_src"
    )
    with pytest.raises(FluxError) as failure:
        publish.execute(context(run_id, plan))
    message = str(failure.value)
    assert failure.value.error_class.value == "data"
    keys = [k for k, _, _ in source if k is not None]
    low, high = sum(1 for k in keys if k < 2000), sum(1 for k in keys if k >= 1000)
    assert f"the parts hold {low + high} rows (a {low}, b {high})" in message
    assert f"but the count query returned {len(source)}" in message and "Nothing was published" in message
    assert pointer_or_none(f"tests/{unique}/overlap") is None


def test_a_publish_that_died_after_writing_is_finished_by_its_retry(stack, source, unique):
    """The manifest and pointer were written, then the try died before reporting: the retry finds the run
    published with the same parts and returns it instead of failing or writing it twice."""
    from flux_provider.operators.bcp_to_s3 import BcpToS3Operator
    from flux_provider.operators.publish_run import PublishRunOperator
    from flux_provider.operators.split_plan import SplitPlanOperator

    location, run_id = f"s3://flux/tests/{unique}/again", f"run_{unique}"
    queries = [
        ("low", "SELECT k, txt FROM dbo.split_src WHERE k < 1500"),
        ("rest", "SELECT k, txt FROM dbo.split_src WHERE k >= 1500 OR k IS NULL"),
    ]
    plan = SplitPlanOperator(task_id="plan", dataset="again", s3_location=location, queries=queries).execute(
        context(run_id)
    )
    for index, part in enumerate(plan):
        ctx = context(run_id)
        ctx["ti"].map_index = index
        BcpToS3Operator(task_id="export_upload", dataset="again", s3_location=location, part=part).execute(ctx)
    publish = PublishRunOperator(
        task_id="publish", dataset="again", s3_location=location, count_sql="SELECT COUNT(*) FROM dbo.split_src"
    )
    first = publish.execute(context(run_id, plan))
    pointer = pointer_or_none(f"tests/{unique}/again")
    again = publish.execute(context(run_id, plan))
    assert again["manifest"] == first["manifest"] and again["rows"] == first["rows"] == len(source)
    assert pointer_or_none(f"tests/{unique}/again") == pointer
