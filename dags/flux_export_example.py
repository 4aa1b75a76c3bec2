"""flux_export_example: BcpExportOperator's worked example on the local stack.

Exports ``dbo.titles`` from the SQL Server connection ``mssql_default`` (on the
local stack: the TDS test server) with the bcp engine (FreeTDS ``freebcp``),
verifies the row count against a count query, and leaves the file under the
staging directory for the upload step. The task's XCom holds path, rows,
bytes, terminators and the columns' SQL types.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from flux_provider.operators.bcp_export import BcpExportOperator

with DAG(
    dag_id="flux_export_example",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux", "example"],
    doc_md=__doc__,
):
    BcpExportOperator(
        task_id="export_titles",
        dataset="titles",
        schema="dbo",
        table="titles",
        count_sql="SELECT COUNT(*) FROM dbo.titles",
        engine="bcp",
        execution_timeout=timedelta(minutes=10),
    )
