"""HiveTransformOperator and PartitionRefreshOperator on the local stack.

HiveServer2 here is Spark Thrift Server (Spark 4, local mode) with a Hive 2.3
metastore (Derby) and tables on SeaweedFS through s3a: the same wire protocol
and metastore as Apache Hive, Spark's SQL dialect and execution."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from flux_provider.errors import ErrorClass, FluxTerminalError, FluxTransientError
from flux_provider.handoffs import RefreshResult
from flux_provider.operators.hive_transform import HiveTransformOperator
from flux_provider.operators.partition_refresh import PartitionRefreshOperator
from tests.support.stack import export, hive, records, s3, seed_table, upload
from tests.support.values import COLUMNS, NASTY_ROWS, context

NASTY_TARGET = {
    "id": "BIGINT",
    "txt": "STRING",
    "amount": "DECIMAL(38,10)",
    "ratio": "DOUBLE",
    "flag": "BOOLEAN",
    "seen": "STRING",
    "day": "DATE",
    "blob": "BINARY",
    "small": "INT",
}


def transform(upload_info: dict, run_id: str, **kwargs) -> dict:
    op = HiveTransformOperator(task_id="transform", upload=upload_info, **kwargs)
    ctx = {**context(run_id), "ds": "2024-01-01"}
    op.render_template_fields(ctx)
    return op.execute(ctx)


def refresh(**kwargs) -> dict:
    kwargs.setdefault("retention_reference", kwargs.pop("ds", "{{ ds }}"))
    op = PartitionRefreshOperator(task_id="refresh", **kwargs)
    ctx = {**context("r"), "ds": "2024-01-01"}
    op.render_template_fields(ctx)
    return op.execute(ctx)


@pytest.fixture
def db(stack, unique):
    name = f"t_{unique}"
    hive().run(f"CREATE DATABASE IF NOT EXISTS {name}")
    return name


@pytest.fixture
def nasty_upload(stack, tmp_path, unique):
    seed_table(stack, f"hv_{unique}")
    info = export(tmp_path, unique, schema="dbo", table=f"hv_{unique}", engine="bcp")
    return upload(unique, info, f"run_{unique}", compression="gzip", chunk_rows=3)


def nasty_transform(upload_info, db, unique, **kwargs):
    kwargs.setdefault("sql", "SELECT " + ", ".join(COLUMNS) + " FROM {{ staging }}")
    kwargs.setdefault("expect_rows", "staging")
    return transform(
        upload_info,
        f"run_{unique}",
        dataset="nasty",
        database=db,
        staging_table="nasty_staging",
        target_table="nasty",
        target_columns=NASTY_TARGET,
        partition={"load_day": "{{ ds }}"},
        partition_types={"load_day": "STRING"},
        **kwargs,
    )


def source_value(column: str, value):
    if value is None:
        return None
    return {
        "amount": lambda v: Decimal(v),
        "flag": bool,
        "day": str,
        "seen": str,
        "blob": lambda v: bytes(v),
    }.get(column, lambda v: v)(value)


def hive_value(column: str, value):
    if value is None:
        return None
    if column == "amount":
        return Decimal(value)
    if column == "day":
        return str(value)
    if column == "blob" and isinstance(value, str):
        return value.encode("latin-1")
    return value


def target_rows(db: str, where: str = "load_day = '2024-01-01'") -> list[tuple]:
    rows = records(f"SELECT {', '.join(COLUMNS)} FROM {db}.nasty WHERE {where}")
    return sorted(tuple(hive_value(c, v) for c, v in zip(COLUMNS, r)) for r in rows)


EXPECTED = sorted(tuple(source_value(c, v) for c, v in zip(COLUMNS, row)) for row in NASTY_ROWS)


# ------------------------------------------------------------------ transform
def test_nasty_values_arrive_in_the_target_table_with_zero_diffs(nasty_upload, db, unique):
    result = nasty_transform(nasty_upload, db, unique)
    assert result["manifest_rows"] == result["staging_rows"] == result["target_rows"] == len(NASTY_ROWS)
    assert result["partitions"] == [
        {"name": "load_day=2024-01-01", "values": {"load_day": "2024-01-01"}, "rows": len(NASTY_ROWS)}
    ]
    assert target_rows(db) == EXPECTED  # every value: NULL vs '', decimals, datetime2(7) text, binary, bit
    # the staging view presents exact Hive types (bit -> BOOLEAN, varbinary hex -> BINARY)
    described = {r[0]: r[1] for r in records(f"DESCRIBE {db}.nasty_staging")}
    assert described == {
        "id": "bigint",
        "txt": "string",
        "amount": "decimal(38,10)",
        "ratio": "double",
        "flag": "boolean",
        "seen": "string",
        "day": "date",
        "blob": "binary",
        "small": "int",
    }


def test_timestamps_and_booleans_are_typed_in_staging(stack, tmp_path, unique, db):
    """datetime2(3) fits Spark's microseconds: a real TIMESTAMP, compared value by value."""
    ddl = "CREATE TABLE dbo.{name} (id INT NOT NULL, at DATETIME2(3), ok BIT, n TINYINT)"
    rows = [(1, "2024-02-29 23:59:59.123", 1, 255), (2, "0001-01-01 00:00:00.000", 0, 0), (3, None, None, None)]
    seed_table(stack, f"ts_{unique}", rows=rows, ddl=ddl)
    info = export(tmp_path, unique, schema="dbo", table=f"ts_{unique}", engine="bcp")
    up = upload(unique, info, f"run_{unique}", s3_location=f"s3://flux/tests/{unique}/ts")
    args = dict(
        dataset="ts",
        database=db,
        staging_table="ts_staging",
        target_table="ts",
        target_columns={"id": "INT", "at": "TIMESTAMP", "ok": "BOOLEAN", "n": "SMALLINT"},
        sql="SELECT id, at, ok, n FROM {{ staging }}",
        expect_rows="staging",
    )
    transform(up, f"run_{unique}", **args)
    assert {r[0]: r[1] for r in records(f"DESCRIBE {db}.ts_staging")}["at"] == "timestamp"
    expected = [
        (1, "2024-02-29 23:59:59.123", True, 255),
        (2, "0001-01-01 00:00:00", False, 0),
        (3, None, None, None),
    ]
    assert sorted(records(f"SELECT id, CAST(at AS STRING), ok, n FROM {db}.ts")) == expected

    # what killed inserts leave under an unpartitioned target: the next successful transform removes it
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.apache.hive.hooks.hive import HiveMetastoreHook

    location = HiveMetastoreHook(metastore_conn_id="metastore_default").get_table("ts", db).sd.location
    bucket, _, prefix = location.split("://", 1)[1].partition("/")
    s3 = S3Hook(aws_conn_id="aws_default")
    leftovers = [f"{prefix}/.spark-staging-{unique}/part-00000.parquet", f"{prefix}/.hive-staging_hive_{unique}/x"]
    for key in leftovers:
        s3.load_bytes(b"half-written", key=key, bucket_name=bucket)
    transform(up, f"run_{unique}", **args)
    assert not any(s3.check_for_key(key, bucket_name=bucket) for key in leftovers)
    assert sorted(records(f"SELECT id, CAST(at AS STRING), ok, n FROM {db}.ts")) == expected


def test_rerun_of_the_same_run_gives_an_identical_target(nasty_upload, db, unique):
    nasty_transform(nasty_upload, db, unique)
    first = target_rows(db)
    again = nasty_transform(nasty_upload, db, unique)
    assert again["target_rows"] == len(NASTY_ROWS) and target_rows(db) == first == EXPECTED
    assert records(f"SELECT COUNT(*) FROM {db}.nasty")[0][0] == len(NASTY_ROWS)  # no duplicates


def test_a_failure_in_the_middle_of_the_transform_keeps_the_previous_partition(nasty_upload, db, unique):
    nasty_transform(nasty_upload, db, unique)
    # fails at run time, on one row only (ANSI cast of a non-number), after the counts passed
    bad = (
        "SELECT id, txt, amount, ratio, flag, seen, day, blob, "
        "CASE WHEN id = 5 THEN CAST(txt AS INT) ELSE small END AS small FROM {{ staging }}"
    )
    with pytest.raises(FluxTerminalError) as failure:
        nasty_transform(nasty_upload, db, unique, sql=bad, expect_rows=None)
    assert failure.value.error_class is ErrorClass.DATA and "data set 'nasty' transform" in str(failure.value)
    assert target_rows(db) == EXPECTED


def zombie_rewrote(client, manifest: dict, change: str) -> str:
    """What a try that Airflow gave up (a zombie) can leave under a run its successor published: the one
    chunk it had in flight, or a file lost behind the manifest's back. Returns the problem's wording."""
    chunk = manifest["chunks"][0]
    if change == "deleted":
        client.delete_object(Bucket="flux", Key=chunk["key"])
        return f"{chunk['key']} is missing"
    if change == "extra":
        extra = manifest["prefix"] + "part-00099.hive.gz"
        client.put_object(Bucket="flux", Key=extra, Body=b"zombie", Metadata={"flux-crc32": "00000000"})
        return f"{extra} is not in the manifest"
    body = client.get_object(Bucket="flux", Key=chunk["key"])["Body"].read()
    rewritten = bytes(reversed(body))  # same size, other bytes (a re-export in another row order)
    client.put_object(Bucket="flux", Key=chunk["key"], Body=rewritten, Metadata={"flux-crc32": "0badc0de"})
    return f"{chunk['key']} was rewritten (CRC32 0badc0de, the manifest {chunk['crc32']})"


@pytest.mark.parametrize("change", ["rewritten", "deleted", "extra"])
def test_a_run_changed_after_it_was_published_is_refused_before_anything_is_read(nasty_upload, db, unique, change):
    from tests.support.stack import read_published

    client = s3()
    _, manifest = read_published(client, "flux", f"tests/{unique}/nasty")
    problem = zombie_rewrote(client, manifest, change)
    with pytest.raises(FluxTerminalError) as failure:
        nasty_transform(nasty_upload, db, unique)
    message = str(failure.value)
    assert failure.value.error_class is ErrorClass.DATA
    assert f"the run {manifest['location']} changed after it was published: {problem}" in message
    assert "nothing was read" in message and "Clear the upload task" in message
    assert not records(f"SHOW TABLES IN {db} LIKE 'nasty'")  # the target was never created


@pytest.mark.parametrize(
    "sql, error_class, fragment",
    [
        ("SELEC id FROM {{ staging }}", ErrorClass.SYNTAX, "Syntax error"),
        ("SELECT no_such_column FROM {{ staging }}", ErrorClass.MISSING_OBJECT, "no_such_column"),
    ],
)
def test_bad_transform_sql_is_a_classified_terminal_error(nasty_upload, db, unique, sql, error_class, fragment):
    with pytest.raises(FluxTerminalError) as failure:
        nasty_transform(nasty_upload, db, unique, sql=sql)
    assert failure.value.error_class is error_class and fragment in str(failure.value)
    assert "data set 'nasty' transform" in str(failure.value)
    assert records(f"SELECT COUNT(*) FROM {db}.nasty")[0][0] == 0  # nothing published


def test_a_type_the_target_cannot_take_names_the_cast_to_write(stack, db):
    """An exported DATETIME2 is a string in staging; Spark refuses it into a TIMESTAMP column. The error says
    which CAST to write, and that CAST works."""
    from flux_provider.errors import FluxError
    from flux_provider.hooks.hive_session import HiveSessionHook

    session = HiveSessionHook(dataset="events", step="transform")
    try:
        session.execute(f"CREATE TABLE {db}.staged (t2 STRING) USING parquet")
        session.execute(f"INSERT INTO {db}.staged VALUES ('2026-12-07 01:02:03.1234567')")
        session.execute(f"CREATE TABLE {db}.typed (t2 TIMESTAMP) USING parquet")
        with pytest.raises(FluxError) as failure:
            session.execute(f"INSERT INTO {db}.typed SELECT t2 FROM {db}.staged")
        assert failure.value.error_class is ErrorClass.DATA
        assert "Fix: cast it in the transform's SELECT: CAST(t2 AS TIMESTAMP) AS t2" in str(failure.value)
        session.execute(f"INSERT INTO {db}.typed SELECT CAST(t2 AS TIMESTAMP) AS t2 FROM {db}.staged")
        assert session.scalar(f"SELECT CAST(t2 AS STRING) FROM {db}.typed") == "2026-12-07 01:02:03.123456"
    finally:
        session.close()


def test_missing_target_database_is_a_clear_error(nasty_upload, unique):
    with pytest.raises(FluxTerminalError) as failure:
        nasty_transform(nasty_upload, f"missing_{unique}", unique)
    assert failure.value.error_class is ErrorClass.MISSING_OBJECT
    assert f"missing_{unique}" in str(failure.value)


def test_expectation_failure_writes_nothing(nasty_upload, db, unique):
    with pytest.raises(FluxTerminalError) as failure:
        nasty_transform(
            nasty_upload, db, unique, sql="SELECT " + ", ".join(COLUMNS) + " FROM {{ staging }} WHERE id <> 1"
        )
    expected = f"yields {len(NASTY_ROWS) - 1} rows, expected {len(NASTY_ROWS)}"
    assert expected in str(failure.value) and "nothing was written" in str(failure.value)
    assert records(f"SELECT COUNT(*) FROM {db}.nasty")[0][0] == 0


def test_on_kill_cancels_the_running_statement(stack, unique):
    from flux_provider.hooks.hive_session import HiveSessionHook

    session = HiveSessionHook(dataset="slow", step="transform")
    slow = "SELECT SUM(hash(a.id, b.id)) FROM range(0, 300000) a CROSS JOIN range(0, 300000) b"
    threading.Timer(3, session.cancel).start()
    started = time.monotonic()
    with pytest.raises(FluxTransientError) as failure:
        session.execute(slow)
    assert failure.value.error_class is ErrorClass.TIMEOUT and "cancelled on the server" in str(failure.value)
    assert time.monotonic() - started < 30  # the query alone runs for minutes
    assert session.scalar("SELECT 1") == 1  # the session is usable again
    session.close()


# ------------------------------------------------------------------ dynamic partitions + refresh + sensors
def daily_upload(stack, tmp_path, unique, rows, run):
    ddl = "CREATE TABLE dbo.{name} (id INT NOT NULL, day DATE NOT NULL, minutes DECIMAL(9,2))"
    seed_table(stack, f"ev_{unique}_{run}", rows=rows, ddl=ddl)
    info = export(tmp_path, f"{unique}_{run}", schema="dbo", table=f"ev_{unique}_{run}", engine="bcp")
    return upload(unique, info, f"{run}_{unique}", s3_location=f"s3://flux/tests/{unique}/events")


def daily_transform(up, db, unique, run):
    return transform(
        up,
        f"{run}_{unique}",
        dataset="events",
        database=db,
        staging_table="events_staging",
        target_table="events_daily",
        target_columns={"sessions": "BIGINT", "minutes": "DECIMAL(19,2)"},
        partition_types={"day": "STRING"},
        dynamic_partitions=["day"],
        sql="SELECT COUNT(*) AS sessions, SUM(minutes) AS minutes, CAST(day AS STRING) AS day "
        "FROM {{ staging }} GROUP BY day",
    )


def assert_airflow_sensors_see(db: str, *, present: tuple[str, ...], absent: str) -> None:
    """Airflow's own Hive sensors find the days the refresh registered, and not one it did not."""
    from airflow.providers.apache.hive.sensors.hive_partition import HivePartitionSensor
    from airflow.providers.apache.hive.sensors.named_hive_partition import NamedHivePartitionSensor

    ctx = context("r")
    named = [f"{db}.events_daily/day={day}" for day in present]
    assert NamedHivePartitionSensor(task_id="s", partition_names=named).poke(ctx) is True
    for day in present:
        sensor = HivePartitionSensor(task_id="s2", table="events_daily", schema=db, partition=f"day='{day}'")
        assert sensor.poke(ctx) is True, day
    missing = NamedHivePartitionSensor(task_id="s3", partition_names=[f"{db}.events_daily/day={absent}"])
    assert missing.poke(ctx) is False


def plant_insert_leftovers(db: str, unique: str):
    """What killed Spark/Hive INSERTs leave under the table's location: (S3 hook, bucket, their keys)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.apache.hive.hooks.hive import HiveMetastoreHook

    location = HiveMetastoreHook(metastore_conn_id="metastore_default").get_table("events_daily", db).sd.location
    bucket, _, prefix = location.split("://", 1)[1].partition("/")
    s3 = S3Hook(aws_conn_id="aws_default")
    leftovers = [
        f"{prefix}/.spark-staging-{unique}/day=2024-01-02/part-00000.parquet",
        f"{prefix}/.hive-staging_hive_{unique}/-ext-10000/000000_0",
    ]
    for key in leftovers:
        s3.load_bytes(b"half-written", key=key, bucket_name=bucket)
    return s3, bucket, leftovers


def test_dynamic_partitions_refresh_latest_view_and_airflow_sensors(stack, tmp_path, unique, db):
    first = [(1, "2024-01-01", "10.50"), (2, "2024-01-01", "1.25"), (3, "2024-01-02", "7.00")]
    result = daily_transform(daily_upload(stack, tmp_path, unique, first, "a"), db, unique, "a")
    assert [(p["name"], p["rows"]) for p in result["partitions"]] == [("day=2024-01-01", 1), ("day=2024-01-02", 1)]
    # the counts are batched: one statement before the INSERT, one after, however many partitions
    counts = [s["statement"] for s in result["statements"] if s["statement"].startswith("count")]
    assert counts == [
        "count the staging rows and the transform per partition",
        "count the target's 2 written partition(s)",
    ]
    out = refresh(
        dataset="events",
        database=db,
        table="events_daily",
        partitions=result["partitions"],
        latest_view="events_latest",
        analyze=True,
    )
    assert out["latest"] == "day=2024-01-02" and out["touched"] == ["day=2024-01-01", "day=2024-01-02"]
    assert RefreshResult.from_json(out).partitions == 2  # the XCom is the typed record's JSON
    assert records(f"SELECT sessions, minutes FROM {db}.events_latest") == [(1, Decimal("7.00"))]

    assert_airflow_sensors_see(db, present=("2024-01-01", "2024-01-02"), absent="2024-01-09")

    # a second run rewrites 01-02 and adds 01-03: 01-01 stays, latest moves, sums are the new ones
    second = [(4, "2024-01-02", "2.00"), (5, "2024-01-02", "3.00"), (6, "2024-01-03", "4.40")]
    result = daily_transform(daily_upload(stack, tmp_path, unique, second, "b"), db, unique, "b")
    s3, bucket, leftovers = plant_insert_leftovers(db, unique)
    again = refresh(
        dataset="events",
        database=db,
        table="events_daily",
        transform_task_id=None,
        partitions=result["partitions"],
        latest_view="events_latest",
    )
    assert again["latest"] == "day=2024-01-03" and again["leftovers_removed"] == 2
    assert not any(s3.check_for_key(key, bucket_name=bucket) for key in leftovers)
    assert records(f"SELECT sessions, minutes FROM {db}.events_latest") == [(1, Decimal("4.40"))]
    assert sorted(records(f"SELECT day, sessions, minutes FROM {db}.events_daily")) == [
        ("2024-01-01", 2, Decimal("11.75")),
        ("2024-01-02", 2, Decimal("5.00")),
        ("2024-01-03", 1, Decimal("4.40")),
    ]
    # idempotent: the same refresh again adds nothing and keeps the pointer
    third = refresh(
        dataset="events",
        database=db,
        table="events_daily",
        partitions=result["partitions"],
        latest_view="events_latest",
    )
    assert third["added"] == [] and third["latest"] == "day=2024-01-03"


def test_refresh_adds_external_partitions_and_drops_expired_ones_with_their_files(stack, unique, db):
    client = s3()
    base = f"tests/{unique}/ext"
    for day in ("2024-01-01", "2024-01-05", "2024-01-10"):
        client.put_object(Bucket="flux", Key=f"{base}/{day}/part-0", Body=f"{day}\x01x\n".encode())
    hive().run(
        f"CREATE EXTERNAL TABLE {db}.ext (d STRING, v STRING) PARTITIONED BY (day STRING) "
        "ROW FORMAT DELIMITED FIELDS TERMINATED BY '\\001' STORED AS TEXTFILE "
        f"LOCATION 's3a://flux/{base}/'"
    )
    parts = [
        {"values": {"day": d}, "location": f"s3a://flux/{base}/{d}"} for d in ("2024-01-01", "2024-01-05", "2024-01-10")
    ]
    out = refresh(
        dataset="ext",
        database=db,
        table="ext",
        partitions=parts,
        latest_view="ext_latest",
        retention_days=7,
        retention_column="day",
        purge=True,
        ds="2024-01-10",
    )
    assert out["added"] == ["day=2024-01-01", "day=2024-01-05", "day=2024-01-10"]
    assert out["dropped"] == ["day=2024-01-01"] and out["latest"] == "day=2024-01-10"
    assert [r[0] for r in records(f"SHOW PARTITIONS {db}.ext")] == ["day=2024-01-05", "day=2024-01-10"]
    assert records(f"SELECT d FROM {db}.ext_latest") == [("2024-01-10",)]
    assert "Contents" not in client.list_objects_v2(Bucket="flux", Prefix=f"{base}/2024-01-01/")
    assert "Contents" in client.list_objects_v2(Bucket="flux", Prefix=f"{base}/2024-01-05/")
    # a moved partition is pointed at its new location
    client.put_object(Bucket="flux", Key=f"{base}/v2/2024-01-05/part-0", Body=b"moved\x01y\n")
    moved = refresh(
        dataset="ext",
        database=db,
        table="ext",
        ds="2024-01-10",
        partitions=[{"values": {"day": "2024-01-05"}, "location": f"s3a://flux/{base}/v2/2024-01-05"}],
    )
    assert moved["added"] == ["day=2024-01-05"]
    assert records(f"SELECT d FROM {db}.ext WHERE day = '2024-01-05'") == [("moved",)]


def test_refresh_of_a_missing_table_is_a_clear_error(stack, db):
    with pytest.raises(FluxTerminalError) as failure:
        refresh(dataset="ext", database=db, table="no_such_table", partitions=[])
    assert failure.value.error_class is ErrorClass.MISSING_OBJECT and "no_such_table" in str(failure.value)


def test_export_upload_transform_refresh_in_a_real_airflow_run(stack, airflow_client, unique):
    """The whole chain under the real scheduler (DAG flux_test_pipeline in the flux-tests bundle)."""
    import random

    rng = random.Random(unique)
    days = ["2026-03-01", "2026-03-02", "2026-03-03"]
    rows = [(i, rng.choice(days), f"{rng.randint(0, 99999) / 100:.2f}") for i in range(1, 301)]
    db = stack.env()["FLUX_MSSQL_DB"]
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS pipeline_src")
    seed_table(
        stack,
        "pipeline_src",
        rows=rows,
        ddl="CREATE TABLE dbo.{name} (id INT NOT NULL, day DATE NOT NULL, minutes DECIMAL(9,2))",
    )
    result = airflow_client.run_dag("flux_test_pipeline", timeout=600)
    assert result.state == "success", airflow_client.task_states("flux_test_pipeline", result.run_id)
    xcom = {t: airflow_client.xcom("flux_test_pipeline", result.run_id, t) for t in ("export", "upload", "transform")}
    assert xcom["export"]["rows"] == xcom["upload"]["rows"] == xcom["transform"]["staging_rows"] == 300
    expected = {}
    for _, day, minutes in rows:
        sessions, total = expected.get(day, (0, Decimal(0)))
        expected[day] = (sessions + 1, total + Decimal(minutes))
    got = {r[0]: (r[1], r[2]) for r in records("SELECT day, sessions, minutes FROM flux_it.pipeline_daily")}
    assert {d: got[d] for d in expected} == expected
    assert {p["name"]: p["rows"] for p in xcom["transform"]["partitions"]} == {f"day={d}": 1 for d in expected}
    # the latest view shows the newest day in the table (other tests' runs may have added later days)
    [(latest,)] = records("SELECT MAX(day) FROM flux_it.pipeline_daily")
    assert latest >= max(expected)
    assert records("SELECT sessions, minutes FROM flux_it.pipeline_latest") == records(
        f"SELECT sessions, minutes FROM flux_it.pipeline_daily WHERE day = '{latest}'"
    )
