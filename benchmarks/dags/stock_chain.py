"""The stock Airflow chain over the same table as ``bench_e2e`` (see e2e_bench.py): what a user without flux writes.

``SqlToS3Operator`` (the whole result as one pandas DataFrame, then CSV) ->
``S3ToHiveOperator`` (download, then ``LOAD DATA`` through beeline) ->
``HiveOperator`` (the same 1:1 copy into a target table, through beeline).

The Hive operators shell out to ``beeline``, which ships in the pyspark wheel: the task process needs it
on PATH with SPARK_HOME and JAVA_HOME, set here at import (the DAG file is parsed again in every task
process). Connection ``hive_cli_bench`` (beeline to the stack's HiveServer2) is added by e2e_bench.py.
"""

import os
import shutil
from pathlib import Path

import pyspark
from airflow.providers.amazon.aws.transfers.sql_to_s3 import SqlToS3Operator
from airflow.providers.apache.hive.operators.hive import HiveOperator
from airflow.providers.apache.hive.transfers.s3_to_hive import S3ToHiveOperator
from airflow.sdk import DAG

_spark = Path(pyspark.__file__).parent
os.environ.setdefault("SPARK_HOME", str(_spark))
if str(_spark / "bin") not in os.environ.get("PATH", ""):
    os.environ["PATH"] = f"{_spark / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
if "JAVA_HOME" not in os.environ and shutil.which("java"):
    os.environ["JAVA_HOME"] = str(Path(os.path.realpath(shutil.which("java"))).parent.parent)

KEY = "s3://flux/bench/stock/bench_sessions.csv"
FIELDS = {
    "session_id": "BIGINT",
    "subscriber_id": "BIGINT",
    "title": "STRING",
    "started_at": "TIMESTAMP",
    "seconds": "INT",
    "revenue": "DECIMAL(12,2)",
    "device": "STRING",
}

with DAG("stock_chain", schedule=None, catchup=False, tags=["flux-bench"]) as dag:
    to_s3 = SqlToS3Operator(
        task_id="sql_to_s3",
        query="SELECT * FROM dbo.bench_sessions",
        sql_conn_id="mssql_default",
        aws_conn_id="aws_default",
        s3_bucket="flux",
        s3_key="bench/stock/bench_sessions.csv",
        replace=True,
        file_format="csv",
        pd_kwargs={"header": False, "index": False},
    )
    to_hive = S3ToHiveOperator(
        task_id="s3_to_hive",
        s3_key=KEY,
        field_dict=FIELDS,
        hive_table="flux_bench.stock_sessions_staging",
        delimiter=",",
        create=True,
        recreate=True,
        aws_conn_id="aws_default",
        hive_cli_conn_id="hive_cli_bench",
    )
    transform = HiveOperator(
        task_id="transform",
        hive_cli_conn_id="hive_cli_bench",
        hql=(
            "CREATE TABLE IF NOT EXISTS flux_bench.stock_sessions (session_id BIGINT, subscriber_id BIGINT, "
            "title STRING, started_at TIMESTAMP, seconds INT, revenue DECIMAL(12,2), device STRING);\n"
            "INSERT OVERWRITE TABLE flux_bench.stock_sessions SELECT session_id, subscriber_id, title, started_at, "
            "seconds, revenue, device FROM flux_bench.stock_sessions_staging;"
        ),
    )
    to_s3 >> to_hive >> transform
