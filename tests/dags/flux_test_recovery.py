"""DAG for the recovery-rule tests (bundle ``flux-tests``): three independent exports, each with its own rules.

* ``deadlock``: the test injects 1205 for the first two tries; the rule retries
  with backoff (3 s, then 6 s);
* ``alert_fail``: a missing table; the rule fails fast and alerts a webhook whose
  URL is the Airflow Variable ``flux_test_webhook`` (set by the test);
* ``skipped``: a missing table; the rule skips with a reason.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from flux_provider.operators.bcp_export import BcpExportOperator
from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator
from flux_provider.recovery import Alert, Fail, Match, Recovery, Retry, Rule, Skip

with DAG(
    dag_id="flux_test_recovery",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux-tests"],
):
    common = dict(dataset="rec", schema="dbo", engine="dbapi")
    BcpExportOperator(
        task_id="deadlock",
        table="rec_src",
        **common,
        recovery=Recovery(
            rules=(
                Rule(
                    Match(number=1205),
                    (Retry(count=3, delay_seconds=3, backoff=2),),
                    name="deadlock",
                ),
            )
        ),
    )
    BcpExportOperator(
        task_id="alert_fail",
        table="rec_missing",
        **common,
        recovery=Recovery(
            rules=(Rule(Match(error_class="missing_object"), (Fail(), Alert()), name="gone"),),
            webhooks=["{{ var.value.flux_test_webhook }}"],
        ),
    )
    BcpExportOperator(
        task_id="skipped",
        table="rec_gone",
        **common,
        recovery=Recovery(
            rules=(
                Rule(
                    Match(error_class="missing_object"),
                    (Skip(reason="rec_gone is rebuilt on Sundays"),),
                    name="weekly rebuild",
                ),
            )
        ),
    )


with DAG(
    dag_id="flux_test_s3_outage",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux-tests"],
):
    # The test points the connection flux_test_private_s3 at a private SeaweedFS that it stops and restarts.
    BcpExportOperator(
        task_id="export", dataset="outage", schema="dbo", table="outage_src", engine="dbapi"
    ) >> S3ChunkUploadOperator(
        task_id="upload",
        dataset="outage",
        s3_location="s3://flux/outage-airflow/data",
        aws_conn_id="flux_test_private_s3",
        recovery=Recovery(
            rules=(
                Rule(
                    Match(error_class="connection", step="upload"),
                    (Retry(count=3, delay_seconds=20),),
                    name="s3 down",
                ),
            )
        ),
    )
