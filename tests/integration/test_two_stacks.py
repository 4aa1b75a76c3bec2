"""Two stacks on one machine at once (two clones, or the demo's stack beside the suite's): started together,
each gets its own ports and data, serves its own clients, and is removed without touching the
other. The stacks here hold S3 (SeaweedFS) and the SQL Server stand-in, the services that keep data (each
stack's staging folder is its run directory's: ``test_stack_services.py``)."""

from __future__ import annotations

import json
import threading

import boto3
import pymssql

from flux_devstack.mssql import DATABASE, LOGIN, TdsStandIn
from flux_devstack.s3 import SeaweedS3
from flux_devstack.stack import Stack


def s3_client(stack: Stack):
    conn = json.loads(stack.env()["AIRFLOW_CONN_AWS_DEFAULT"])
    return boto3.client(
        "s3",
        endpoint_url=conn["extra"]["endpoint_url"],
        aws_access_key_id=conn["login"],
        aws_secret_access_key=conn["password"],
        region_name=conn["extra"].get("region_name", "us-east-1"),
    )


def test_two_stacks_start_at_once_and_keep_apart(tmp_path):
    stacks = [
        Stack(run_dir=tmp_path / name, dags_folder=tmp_path, services=[SeaweedS3(), TdsStandIn()], echo=lambda _: None)
        for name in ("one", "two")
    ]
    errors: list[BaseException] = []

    def up(stack: Stack) -> None:
        try:
            stack.up()
        except BaseException as exc:  # reported below, with the other stack's fate
            errors.append(exc)

    threads = [threading.Thread(target=up, args=(stack,)) for stack in stacks]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        assert not errors, errors
        ports = [set(stack.load_state()["ports"].values()) for stack in stacks]
        assert ports[0].isdisjoint(ports[1])
        for index, stack in enumerate(stacks):
            client = s3_client(stack)
            client.create_bucket(Bucket="mine")
            client.put_object(Bucket="mine", Key=f"from-{index}", Body=b"x")
            state = stack.load_state()
            conn = pymssql.connect(
                server="127.0.0.1",
                port=state["ports"]["mssql"],
                user=LOGIN,
                password=state["secrets"]["mssql_password"],
                database=DATABASE,
            )
            cursor = conn.cursor()
            cursor.execute(f"CREATE TABLE dbo.only_{index} (id INT)")
            conn.close()
        for index, stack in enumerate(stacks):
            keys = [o["Key"] for o in s3_client(stack).list_objects_v2(Bucket="mine").get("Contents", [])]
            assert keys == [f"from-{index}"]
        sockets = SeaweedS3().leftovers(stacks[0].context())
        assert sockets  # weed's local sockets, in the system's temp folder
        stacks[0].purge()
        assert not (tmp_path / "one").exists() and not any(s.exists() for s in sockets)
        assert [s.state for s in stacks[1].status()] == ["healthy", "healthy"]
    finally:
        for stack in stacks:
            stack.purge()
