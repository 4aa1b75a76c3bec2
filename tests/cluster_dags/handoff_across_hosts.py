"""A file-mode export on one host handed to an upload on the other (bundle ``flux-cluster-tests``).

Each queue is served by one worker host of the cluster stack, and each host has its own staging disk:
the upload must fail at once with the error naming both hosts, and nothing is published.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from flux_provider.operators.bcp_export import BcpExportOperator
from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator

with DAG(
    dag_id="flux_test_handoff_across_hosts",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux-tests"],
    default_args={"retries": 2},
):
    (
        BcpExportOperator(
            task_id="export",
            dataset="handoff_across",
            schema="dbo",
            table="catalog_titles",
            engine="bcp",
            queue="flux-worker-1",
        )
        >> S3ChunkUploadOperator(
            task_id="upload",
            dataset="handoff_across",
            s3_location="s3://flux/tests/handoff_across",
            chunk_rows=500,
            queue="flux-worker-2",
        )
    )
