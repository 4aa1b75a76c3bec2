"""DAGs the test suite runs through the local stack's real scheduler (bundle ``flux-tests``)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from flux_provider.operators.bcp_export import BcpExportOperator

with DAG(
    dag_id="flux_test_export_bad_login",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux-tests"],
    default_args={"retries": 3, "retry_delay": timedelta(seconds=1)},
):
    # The connection flux_test_bad_password is created by the test with a wrong password.
    BcpExportOperator(task_id="export", dataset="titles", schema="dbo", table="titles",
                      mssql_conn_id="flux_test_bad_password", engine="bcp")
