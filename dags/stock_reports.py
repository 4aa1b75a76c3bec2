"""stock_reports: an adaptive pool of stock operators (no flux operator in it).

Eight ``SQLExecuteQueryOperator`` tasks query ``dbo.report_src`` on the SQL Server
connection ``mssql_default``, all in the Airflow pool ``stock_reports``. Adopted
by the flux controller, the pool sizes itself to the source: a deadlock victim
(SQL Server error 1205, raised by pymssql as ``OperationalError``) cuts it, clean
periods grow it back, within the bounds given at adoption::

    airflow pools set stock_reports 4 "reports on the warehouse"
    python -m flux_provider.throttle adopt stock_reports --min 1 --max 8 \\
        --rule 'deadlock: exception=OperationalError message="(?i)deadlock victim"' \\
        --rule 'timeout: message="(?i)timed? ?out"'

The same through the API: ``PUT /flux/api/pools/stock_reports/adaptive`` with
``{"min": 1, "max": 8, "rules": [...]}``. Nothing in this file knows about flux:
the plugin's listener records each failed try's exception and the controller
classes it by the pool's rules (:mod:`flux_provider.throttle.adopted`). The
retry delay is longer than the controller's period (``[flux] throttle_period``,
10 s on the local stack): Airflow clears a try's XComs when the next try starts,
and a failure the controller did not see in time counts as ``crash`` (it
neither cuts nor grows the pool).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import DAG

with DAG(
    dag_id="stock_reports",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_tasks=16,
    tags=["example", "adaptive pool"],
    doc_md=__doc__,
    # longer than the controller's period: Airflow clears a try's XComs when the next try starts
    default_args={"retries": 6, "retry_delay": timedelta(seconds=15)},
):
    SQLExecuteQueryOperator.partial(
        task_id="report", conn_id="mssql_default", pool="stock_reports", show_return_value_in_logs=False
    ).expand(sql=[f"SELECT COUNT(*) FROM dbo.report_src WHERE id % 8 = {part}" for part in range(8)])
