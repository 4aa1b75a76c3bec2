"""The operators' examples in the docs, as DAGs the suite parses (tests/unit/provider/test_docs.py).

``example_flux_chain`` runs the four steps as four tasks: export to a file, upload it in chunks, transform
it in Hive, refresh the target's partitions. ``example_flux_streamed`` streams the export straight into
the upload (one task), as the DAG factory does for a spec with ``<export mode="streaming"/>``.
``example_flux_split`` cuts one export into key ranges, one mapped task each, and publishes the run once
every part uploaded, as the DAG factory does for a spec with ``<split>``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

# [START howto_operator_bcp_export_import]
from flux_provider.operators.bcp_export import BcpExportOperator

# [END howto_operator_bcp_export_import]
from flux_provider.operators.bcp_to_s3 import BcpToS3Operator
from flux_provider.operators.hive_transform import HiveTransformOperator
from flux_provider.operators.partition_refresh import PartitionRefreshOperator
from flux_provider.operators.publish_run import PublishRunOperator
from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator
from flux_provider.operators.split_plan import SplitPlanOperator

with DAG(
    dag_id="example_flux_chain",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux", "example"],
):
    # [START howto_operator_bcp_export]
    export = BcpExportOperator(
        task_id="export",
        dataset="viewing_sessions",
        schema="dbo",
        table="viewing_sessions",  # validated identifiers; or sql="SELECT ..." (templated)
        count_sql="SELECT COUNT(*) FROM dbo.viewing_sessions",  # optional: the export must match it
        mssql_conn_id="mssql_default",
        engine="auto",  # "bcp" (bcp/freebcp), "dbapi", or auto: bcp if installed
        execution_timeout=timedelta(hours=1),
    )
    # [END howto_operator_bcp_export]

    # [START howto_operator_s3_chunk_upload]
    upload = S3ChunkUploadOperator(
        task_id="upload",
        dataset="viewing_sessions",
        export_task_id="export",  # whose XCom describes the file
        s3_location="s3://flux/datasets/viewing_sessions",
        aws_conn_id="aws_default",
        chunk_mb=32,  # and/or chunk_rows=...
        compression="gzip",  # or None
    )
    # [END howto_operator_s3_chunk_upload]

    # [START howto_operator_hive_transform]
    transform = HiveTransformOperator(
        task_id="transform",
        dataset="viewing_sessions",
        upload_task_id="upload",  # whose XCom says which run was published
        database="media",
        staging_table="viewing_sessions_staging",
        target_table="viewing_sessions_daily",
        sql="SELECT genre, COUNT(*) AS sessions, day FROM {{ staging }} GROUP BY genre, day",  # or a file
        dynamic_partitions=["day"],  # or partition={"day": "{{ flux_day }}"} (static)
        target_columns={"genre": "STRING", "sessions": "BIGINT"},  # create the target if missing
        partition_types={"day": "STRING"},
        expect_rows=None,  # "staging" for a 1:1 transform, or a number
    )
    # [END howto_operator_hive_transform]

    # [START howto_operator_partition_refresh]
    refresh = PartitionRefreshOperator(
        task_id="refresh",
        dataset="viewing_sessions",
        database="media",
        table="viewing_sessions_daily",  # partitions to register: the transform's XCom (default)
        latest_view="viewing_sessions_latest",
        retention_days=400,
        retention_column="day",
        purge=False,
        analyze=True,
    )
    # [END howto_operator_partition_refresh]

    export >> upload >> transform >> refresh

with DAG(
    dag_id="example_flux_streamed",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux", "example"],
):
    # [START howto_operator_bcp_to_s3]
    export_upload = BcpToS3Operator(
        task_id="export_upload",
        dataset="titles",
        schema="dbo",
        table="titles",
        s3_location="s3://flux/datasets/titles",
        upload_options={"chunk_mb": 64, "compression": "gzip"},  # S3ChunkUploadOperator's chunking arguments
    )
    # [END howto_operator_bcp_to_s3]
    export_upload >> HiveTransformOperator(
        task_id="transform",
        dataset="titles",
        upload_task_id="export_upload",
        database="media",
        staging_table="titles_staging",
        target_table="titles",
        sql="SELECT * FROM {{ staging }}",
        expect_rows="staging",
    )

with DAG(
    dag_id="example_flux_split",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux", "example"],
):
    # [START howto_operator_split_plan]
    plan = SplitPlanOperator(
        task_id="plan",
        dataset="viewing_sessions",
        schema="dbo",
        table="viewing_sessions",  # or sql="SELECT ..." (templated), or queries=[(name, sql), ...]
        column="session_id",  # key ranges of this column
        parts=8,  # or every="day" / "hour": one part per window of the data interval
        reconcile=True,  # each part's export is checked against its own COUNT(*)
        s3_location="s3://flux/datasets/viewing_sessions",
    )
    # [END howto_operator_split_plan]
    parts = BcpToS3Operator.partial(
        task_id="export_upload",
        dataset="viewing_sessions",
        s3_location="s3://flux/datasets/viewing_sessions",
        map_index_template="{{ task.part['name'] }}",
    ).expand(part=plan.output)
    # [START howto_operator_publish_run]
    publish = PublishRunOperator(
        task_id="publish",
        dataset="viewing_sessions",
        plan_task_id="plan",  # whose XCom lists the parts
        s3_location="s3://flux/datasets/viewing_sessions",
        count_sql="SELECT COUNT(*) FROM dbo.viewing_sessions",  # optional: the parts' rows must add up to it
    )
    # [END howto_operator_publish_run]
    plan >> parts >> publish
