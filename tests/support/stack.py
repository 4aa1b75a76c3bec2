"""Helpers for tests on the local stack (not tests): load the SQL Server stand-in, inject its faults,
run the export and upload operators, query Hive."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from flux_devstack.tds.seed import load_seed
from flux_provider.operators.bcp_export import BcpExportOperator
from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator
from tests.support.values import NASTY_DDL, NASTY_ROWS, context


def pools_sync(stack, folder, *options: str) -> str:
    """``pools sync`` of the specs under ``folder`` into the stack's Airflow, as a deploy job runs it (a
    ``--reset`` puts back the bounds and pins a reused stack may hold from an earlier run). Returns its output."""
    return subprocess.run(
        [sys.executable, "-m", "flux_provider.specs", "pools", "sync", *options, str(folder)],
        env={**os.environ, "AIRFLOW_HOME": stack.env()["AIRFLOW_HOME"]},
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def seed_table(stack, name: str, rows=NASTY_ROWS, ddl: str = NASTY_DDL) -> None:
    """Create and fill a table in the stand-in's SQLite file with exact values (bound, not literals)."""
    db = Path(stack.env()["FLUX_MSSQL_DB"])
    load_seed(db, ddl.format(name=name))
    with sqlite3.connect(db) as conn:
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)


def inject_fault(
    stack,
    pattern: str,
    *,
    error_number: int | None = None,
    remaining: int = 1,
    delay_seconds: float = 0,
    after_rows: int = 0,
) -> None:
    with sqlite3.connect(Path(stack.env()["FLUX_MSSQL_DB"])) as conn:
        conn.execute(
            "INSERT INTO flux_faults VALUES (?, ?, ?, ?, ?)",
            (pattern, error_number, remaining, delay_seconds, after_rows),
        )


def export(tmp_path, unique, **kwargs) -> dict:
    kwargs.setdefault("dataset", "nasty")
    op = BcpExportOperator(task_id="export", staging_dir=str(tmp_path), **kwargs)
    return op.execute(context(f"run_{unique}"))


def s3():
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook().get_conn()


def upload(unique: str, info: dict, run_id: str, **kwargs) -> dict:
    kwargs.setdefault("s3_location", f"s3://flux/tests/{unique}/nasty")
    kwargs.setdefault("delete_export", False)
    op = S3ChunkUploadOperator(task_id="upload", dataset="nasty", export=info, **kwargs)
    return op.execute(context(run_id))


# ------------------------------------------------------------------ helpers on the stack
def hive():
    from airflow.providers.apache.hive.hooks.hive import HiveServer2Hook

    return HiveServer2Hook()


def records(sql: str) -> list[tuple]:
    conn = hive().get_conn()  # a cursor: the hook's get_records expects results only from SELECT/SHOW
    try:
        cursor = conn.cursor()
        cursor.execute(sql)
        return [tuple(r) for r in cursor.fetchall()]
    finally:
        conn.close()


def read_published(client, bucket: str, location: str) -> tuple[dict, dict]:
    """The stored JSON of a data set's pointer and of the manifest it names, as S3 holds them."""
    import json

    from flux_provider.s3_layout import DatasetLayout

    key = DatasetLayout(bucket, location).pointer_key
    pointer = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    manifest = json.loads(client.get_object(Bucket=bucket, Key=pointer["manifest"])["Body"].read())
    return pointer, manifest


def wait_until(condition, timeout: float, what, every: float = 1.0):
    """``condition()``'s first truthy value, asked every ``every`` s; fails saying ``what`` (a text, or a
    function that says what was seen) did not happen."""
    import time

    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what() if callable(what) else what}"
        time.sleep(every)
    return value


def wait_scheduler_loops(stack, loops: int = 2, timeout: float = 120.0) -> None:
    """Return once the stack's scheduler has heartbeaten ``loops`` times from now (it heartbeats from its
    scheduling loop): what a test waits for before it asserts that the scheduler started nothing."""
    import time

    from sqlalchemy import create_engine, text

    engine = create_engine(stack.env()["FLUX_AIRFLOW_DB"])
    query = text("SELECT MAX(latest_heartbeat) FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'")
    seen, deadline = [], time.monotonic() + timeout
    try:
        while len(seen) <= loops:
            with engine.connect() as conn:
                beat = conn.execute(query).scalar()
            if beat is not None and (not seen or beat > seen[-1]):
                seen.append(beat)
            assert time.monotonic() < deadline, f"the scheduler heartbeat {len(seen) - 1} of {loops} times"
            time.sleep(0.5)
    finally:
        engine.dispose()
