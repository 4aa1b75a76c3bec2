"""The local stack's real services, used through Airflow's own hooks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flux_devstack.stack import UP
from tests.support import REPO

pytestmark = pytest.mark.stack


def test_s3_put_list_get_through_s3hook(stack, unique):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook()
    keys = [f"tests/{unique}/a.txt", f"tests/{unique}/b/c.txt"]
    for i, key in enumerate(keys):
        hook.load_bytes(f"payload {i}\n".encode(), key=key, bucket_name="flux")
    assert sorted(hook.list_keys("flux", prefix=f"tests/{unique}/")) == sorted(keys)
    assert hook.read_key(keys[1], bucket_name="flux") == "payload 1\n"
    assert hook.get_conn().meta.endpoint_url == stack.env()["FLUX_S3_ENDPOINT"]


def test_s3_rejects_wrong_secret(stack):
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client(
        "s3",
        endpoint_url=stack.env()["FLUX_S3_ENDPOINT"],
        region_name="us-east-1",
        aws_access_key_id="nobody",
        aws_secret_access_key="wrong",
    )
    with pytest.raises(ClientError):
        client.list_objects_v2(Bucket="flux")


def test_hive_table_on_s3a_reads_object_uploaded_by_s3hook(stack, unique):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.apache.hive.hooks.hive import HiveMetastoreHook, HiveServer2Hook

    prefix = f"tests/{unique}/events/"
    S3Hook().load_bytes(
        b"1\x01play\x0112.50\n2\x01\\N\x010.01\n3\x01pa\\\x01use\x01\\N\n", key=prefix + "part-0", bucket_name="flux"
    )
    database, table = f"t_{unique}", "events"
    hive = HiveServer2Hook()
    hive.run(f"CREATE DATABASE {database}")
    hive.run(
        f"CREATE EXTERNAL TABLE {database}.{table} (id BIGINT, action STRING, amount DECIMAL(6,2)) "
        "ROW FORMAT DELIMITED FIELDS TERMINATED BY '\\001' ESCAPED BY '\\\\' STORED AS TEXTFILE "
        f"LOCATION 's3a://flux/{prefix}' TBLPROPERTIES ('serialization.null.format'='\\\\N')"
    )
    rows = hive.get_records(f"SELECT id, action, CAST(amount AS STRING) FROM {database}.{table} ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, "play", "12.50"), (2, None, "0.01"), (3, "pa\x01use", None)]

    metastore = HiveMetastoreHook()
    assert metastore.table_exists(table, db=database)
    described = metastore.get_table(table, db=database)
    assert [(c.name, c.type) for c in described.sd.cols] == [
        ("id", "bigint"),
        ("action", "string"),
        ("amount", "decimal(6,2)"),
    ]
    assert described.sd.location.rstrip("/") == f"s3a://flux/{prefix}".rstrip("/")


def test_no_dag_import_errors(airflow_client):
    errors = airflow_client.request("GET", "/importErrors").json()["import_errors"]
    assert errors == []


def test_smoke_dag_succeeds_in_a_real_scheduler_run(stack, airflow_client):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.apache.hive.hooks.hive import HiveServer2Hook

    result = airflow_client.run_dag("flux_smoke", timeout=300)
    assert result.state == "success", result.task_states
    assert result.task_states == {"upload": "success", "create_table": "success", "check": "success"}
    uploaded = airflow_client.xcom("flux_smoke", result.run_id, "upload")
    # What the DAG wrote is really there: the object in S3 and the rows in Hive.
    assert S3Hook().list_keys("flux", prefix=uploaded["prefix"]) == [uploaded["prefix"] + "part-00000"]
    assert HiveServer2Hook().get_records(f"SELECT COUNT(*), COUNT(name) FROM {uploaded['table']}") == [(4, 3)]


def test_status_and_env_cli(stack):
    cli = [sys.executable, "-m", "flux_devstack", "--run-dir", str(stack.run_dir)]
    status = subprocess.run([*cli, "status"], capture_output=True, text=True, cwd=REPO)
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()[1:]
    assert {line.split()[0] for line in lines} == {s.name for s in stack.services}
    assert all(any(f" {state} " in line for state in UP) for line in lines), status.stdout

    env = subprocess.run([*cli, "env"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    for name in (
        "AIRFLOW_HOME",
        "AIRFLOW_CONN_AWS_DEFAULT",
        "AIRFLOW_CONN_HIVESERVER2_DEFAULT",
        "AIRFLOW_CONN_METASTORE_DEFAULT",
        "FLUX_AIRFLOW_URL",
    ):
        assert f"export {name}=" in env


def test_connections_are_in_the_airflow_ui(airflow_client, stack):
    conns = airflow_client.request("GET", "/connections").json()["connections"]
    by_id = {c["connection_id"]: c for c in conns}
    assert {"aws_default", "hiveserver2_default", "metastore_default"} <= set(by_id)
    assert by_id["hiveserver2_default"]["port"] == int(stack.env()["FLUX_HIVESERVER2_PORT"])


def test_the_stacks_airflow_stages_exports_under_its_own_run_directory(stack):
    """Two stacks on one machine never share export files: `[flux] staging_dir` is the stack's own."""
    home = stack.env()["AIRFLOW_HOME"]
    got = subprocess.run(
        [sys.executable, "-m", "airflow", "config", "get-value", "flux", "staging_dir"],
        capture_output=True,
        text=True,
        env={**os.environ, "AIRFLOW_HOME": home},
        timeout=120,
    )
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.strip().splitlines()[-1] == str(stack.run_dir / "staging")


def test_env_exports_nothing_that_up_reads_as_the_callers_choice(stack):
    """`eval "$(python -m flux_devstack env)"` in a shell must not change what a later `up` there decides."""
    chosen = {"FLUX_POSTGRES_URL", "FLUX_REDIS_URL", "FLUX_CACHE_DIR", "FLUX_HOST_LIMIT"}  # its own dir: on purpose
    assert set(stack.env()) & chosen == set()
    assert stack.env()["FLUX_STACK_POSTGRES_URL"].startswith("postgresql://")
