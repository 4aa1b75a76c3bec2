"""flux_smoke: proves a deployment's S3 + Hive wiring end to end through the real scheduler.

1. ``upload``: writes a small Hive text file (``\\001`` fields, ``\\N`` NULL,
   backslash escapes) to S3 with ``S3Hook``, under a prefix unique to the run.
2. ``create_table``: creates an external Hive table over that prefix on
   ``s3a://`` with ``HiveServer2Hook``.
3. ``check``: reads the table back and fails unless every row equals what was
   uploaded (NULL vs empty string, an escaped delimiter and a decimal included).

No I/O at parse time; the bucket and Hive database are DAG params.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pendulum
from airflow.sdk import dag, task

ROWS = [
    (1, "alpha", Decimal("10.50")),
    (2, "", Decimal("0.00")),  # empty string, not NULL
    (3, None, Decimal("-7.25")),  # NULL
    (4, "tab\x01inside", None),  # the field delimiter inside a value, escaped
]


def _encode(value) -> str:
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\x01", "\\\x01")


@dag(
    dag_id="flux_smoke",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux", "smoke"],
    params={"bucket": "flux", "database": "flux_smoke"},
    doc_md=__doc__,
)
def flux_smoke():
    @task
    def upload(params=None, run_id=None) -> dict:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        tag = hashlib.sha1(run_id.encode()).hexdigest()[:12]
        prefix = f"smoke/{tag}/"
        body = "".join("\x01".join(_encode(v) for v in row) + "\n" for row in ROWS).encode()
        S3Hook().load_bytes(body, key=prefix + "part-00000", bucket_name=params["bucket"], replace=True)
        return {
            "bucket": params["bucket"],
            "prefix": prefix,
            "table": f"{params['database']}.run_{tag}",
            "rows": len(ROWS),
            "bytes": len(body),
        }

    @task
    def create_table(uploaded: dict) -> str:
        from airflow.providers.apache.hive.hooks.hive import HiveServer2Hook

        database = uploaded["table"].split(".")[0]
        hook = HiveServer2Hook()
        hook.run(f"CREATE DATABASE IF NOT EXISTS {database}")
        hook.run(f"DROP TABLE IF EXISTS {uploaded['table']}")
        hook.run(
            f"CREATE EXTERNAL TABLE {uploaded['table']} (id INT, name STRING, amount DECIMAL(10,2)) "
            "ROW FORMAT DELIMITED FIELDS TERMINATED BY '\\001' ESCAPED BY '\\\\' "
            "STORED AS TEXTFILE "
            f"LOCATION 's3a://{uploaded['bucket']}/{uploaded['prefix']}' "
            "TBLPROPERTIES ('serialization.null.format'='\\\\N')"
        )
        return uploaded["table"]

    @task
    def check(table: str) -> dict:
        from airflow.providers.apache.hive.hooks.hive import HiveServer2Hook
        from airflow.sdk.exceptions import AirflowFailException

        got = [tuple(r) for r in HiveServer2Hook().get_records(f"SELECT id, name, amount FROM {table} ORDER BY id")]
        expected = [(i, n, a) for i, n, a in ROWS]
        if got != expected:
            raise AirflowFailException(f"{table} read back {got!r}, expected {expected!r}")
        return {"table": table, "rows_checked": len(got), "result": "all rows equal"}

    check(create_table(upload()))


flux_smoke()
