"""Landing retention on the stack: after three reruns of one day and runs of two more, S3's runs/ and the raw
staging table hold only what the rule keeps, and every target partition still reads exactly."""

from __future__ import annotations

from decimal import Decimal

from flux_provider.operators.hive_transform import HiveTransformOperator
from flux_provider.operators.partition_refresh import PartitionRefreshOperator
from flux_provider.retention import Landing, LandingRule
from tests.support.stack import export, hive, records, s3, seed_table, upload
from tests.support.values import context

DDL = "CREATE TABLE dbo.{name} (id INT NOT NULL, day DATE NOT NULL, minutes DECIMAL(9,2))"


def generations(unique: str) -> list[str]:
    client = s3()
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="flux", Prefix=f"tests/{unique}/ev/runs/")
        for o in page.get("Contents", [])
    ]
    return sorted({key.split("/runs/", 1)[1].split("/", 1)[0] for key in keys})


def raw_partitions(db: str) -> list[str]:
    return sorted(r[0].split("=", 1)[1] for r in records(f"SHOW PARTITIONS `{db}`.`ev_staging_raw`"))


def load(stack, tmp_path, unique, db, day: str, run_id: str, rows: int, landing: Landing) -> dict:
    """One run of the data set for ``day``: export -> upload -> transform -> refresh (the last task prunes)."""
    table = f"lr_{unique}_{day.replace('-', '')}_{rows}"
    values = [(i, day, str(Decimal(i) / 4)) for i in range(rows)]  # the stand-in's SQLite binds text
    seed_table(stack, table, rows=values, ddl=DDL)
    info = export(tmp_path, f"{unique}_{run_id}", schema="dbo", table=table, engine="bcp")
    up = upload(unique, info, run_id, s3_location=landing.s3_location)
    op = HiveTransformOperator(
        task_id="transform",
        upload=up,
        dataset="ev",
        database=db,
        staging_table="ev_staging",
        target_table="ev_daily",
        target_columns={"sessions": "BIGINT", "minutes": "DECIMAL(19,2)"},
        partition_types={"day": "STRING"},
        dynamic_partitions=["day"],
        sql="SELECT COUNT(*) AS sessions, SUM(minutes) AS minutes, CAST(day AS STRING) AS day "
        "FROM {{ staging }} GROUP BY day",
    )
    ctx = {**context(run_id), "ds": day}
    op.render_template_fields(ctx)
    done = op.execute(ctx)
    refresh = PartitionRefreshOperator(
        task_id="refresh",
        dataset="ev",
        database=db,
        table="ev_daily",
        transform_task_id=None,
        partitions=done["partitions"],
        landing=landing,
    )
    return refresh.execute(ctx)


def test_reruns_and_days_leave_only_what_the_rule_keeps(stack, tmp_path, unique):
    db = f"t_{unique}"
    hive().run(f"CREATE DATABASE IF NOT EXISTS {db}")
    landing = Landing(f"s3://flux/tests/{unique}/ev", f"`{db}`.`ev_staging_raw`", LandingRule(keep_runs=2, keep_days=0))
    day1 = f"manual__{unique}_d1"  # one Airflow run loaded three times: generations d1, d1.1, d1.2
    for rows in (3, 4, 5):
        out = load(stack, tmp_path, unique, db, "2026-11-01", day1, rows, landing)
    assert out["landing"]["removed"] == [day1] and out["landing"]["kept"] == 2
    assert generations(unique) == [f"{day1}.1", f"{day1}.2"] == raw_partitions(db)

    out = load(stack, tmp_path, unique, db, "2026-11-02", f"manual__{unique}_d2", 6, landing)
    assert out["landing"]["removed"] == [f"{day1}.1"]  # kept: d2 (published) and d1.2 (the newest before it)
    out = load(stack, tmp_path, unique, db, "2026-11-03", f"manual__{unique}_d3", 7, landing)
    assert out["landing"]["removed"] == [f"{day1}.2"]
    kept = [f"manual__{unique}_d2", f"manual__{unique}_d3"]  # the published run and the one before it
    assert generations(unique) == kept == raw_partitions(db)

    # the target's partitions live in the target table: each still reads exactly (the last load of its day)
    target = records(f"SELECT day, sessions, CAST(minutes AS STRING) FROM `{db}`.`ev_daily` ORDER BY day")
    expected = [
        (day, n, str(sum(Decimal(i) / 4 for i in range(n)).quantize(Decimal("0.01"))))
        for day, n in (("2026-11-01", 5), ("2026-11-02", 6), ("2026-11-03", 7))
    ]
    assert [tuple(r) for r in target] == expected
    # and the staging view still reads the run it was pointed at
    assert records(f"SELECT COUNT(*) FROM `{db}`.`ev_staging`") == [(7,)]


def test_the_store_gives_back_the_disk_retention_frees(tmp_path, monkeypatch):
    """A SeaweedFS volume keeps a deleted object's bytes until it is compacted: the stack's store compacts a
    volume that is a tenth garbage at its next sweep (every 30 s; every 5 s in this test's private S3, whose disk
    holds this test's objects alone), so what landing retention deletes leaves the store's data folder."""
    import os
    import time

    from flux_devstack.s3 import SeaweedS3
    from flux_devstack.stack import Stack
    from flux_provider.hooks import landing
    from flux_provider.hooks.s3_client import s3_client
    from flux_provider.s3_layout import DatasetLayout

    def disk() -> int:
        return sum(f.stat().st_size for f in (tmp_path / "s3" / "s3" / "data").rglob("*") if f.is_file())

    private = Stack(run_dir=tmp_path / "s3", dags_folder=tmp_path, services=[SeaweedS3(5)], echo=lambda _: None)
    private.up()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_FLUX_RETENTION_S3", private.env()["AIRFLOW_CONN_AWS_DEFAULT"])
        client = s3_client("flux_retention_s3")
        client.create_bucket(Bucket="landing")
        layout = DatasetLayout("landing", "landing/ev")
        for name in ("run-1", "run-2", "run-3"):
            for part in range(4):
                key = f"{layout.runs_prefix}{name}/part-{part:05d}.gz"
                client.put_object(Bucket="landing", Key=key, Body=os.urandom(2 << 20))
            client.put_object(Bucket="landing", Key=layout.generation(name).manifest_key, Body=b"{}")
        runs = landing.landing_runs(client, "landing", "landing/ev")
        doomed = [r for r in runs if r.name != "run-3"]
        before, freed = disk(), sum(r.bytes for r in doomed)
        assert landing.remove(client, "landing", doomed) == 10
        deadline = time.monotonic() + 90
        while disk() > before - freed * 0.9:
            assert time.monotonic() < deadline, f"the store gave back {before - disk()} of {freed} freed bytes"
            time.sleep(0.5)
        assert [r.name for r in landing.landing_runs(client, "landing", "landing/ev")] == ["run-3"]
    finally:
        private.purge()
