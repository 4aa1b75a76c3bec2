"""DAGs the test suite runs through the local stack's real scheduler (bundle ``flux-tests``)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from flux_provider.operators.bcp_export import BcpExportOperator
from flux_provider.operators.hive_transform import HiveTransformOperator
from flux_provider.operators.partition_refresh import PartitionRefreshOperator
from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator

with DAG(
    dag_id="flux_test_export_bad_login",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux-tests"],
    default_args={"retries": 3, "retry_delay": timedelta(seconds=1)},
):
    # The connection flux_test_bad_password is created by the test with a wrong password.
    BcpExportOperator(
        task_id="export",
        dataset="titles",
        schema="dbo",
        table="titles",
        mssql_conn_id="flux_test_bad_password",
        engine="bcp",
    )


with DAG(
    dag_id="flux_test_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["flux-tests"],
):
    # The test fills dbo.pipeline_src in the SQL Server stand-in, then checks Hive.
    (
        BcpExportOperator(
            task_id="export",
            dataset="pipeline",
            schema="dbo",
            table="pipeline_src",
            engine="bcp",
            count_sql="SELECT COUNT(*) FROM dbo.pipeline_src",
        )
        # Variables set by the manual-recovery test break a step on purpose: flux_pipeline_bucket (upload),
        # flux_fail_transform (transform), flux_refresh_reference (refresh)
        >> S3ChunkUploadOperator(
            task_id="upload",
            dataset="pipeline",
            s3_location="s3://{{ var.value.get('flux_pipeline_bucket', 'flux') }}/tests/pipeline",
            compression="gzip",
            chunk_rows=50,
        )
        >> HiveTransformOperator(
            task_id="transform",
            dataset="pipeline",
            database="flux_it",
            create_database=True,
            staging_table="pipeline_staging",
            target_table="pipeline_daily",
            target_columns={"sessions": "BIGINT", "minutes": "DECIMAL(19,2)"},
            partition_types={"day": "STRING"},
            dynamic_partitions=["day"],
            sql="SELECT COUNT(*) AS sessions, SUM(minutes) AS minutes, "
            "{{ 'CAST(\\'x\\' AS INT) + ' if var.value.get('flux_fail_transform', '') else '' }}"
            "CAST(day AS STRING) AS day FROM {{ staging }} GROUP BY day",
        )
        >> PartitionRefreshOperator(
            task_id="refresh",
            dataset="pipeline",
            database="flux_it",
            table="pipeline_daily",
            latest_view="pipeline_latest",
            analyze=True,
            retention_days=36500,
            retention_column="day",
            retention_reference="{{ var.value.get('flux_refresh_reference', '') }}",
        )
    )
