"""DAG for the throttle end-to-end test (bundle ``flux-tests``): two data sets' queries in their own pools.

Eight export tasks of data set ``tx`` (pool ``flux_tx``) and eight of ``ty``
(pool ``flux_ty``) against the SQL Server stand-in; the test injects faults
(deadlocks for tx, delays for both) and creates the pools before triggering.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from flux_provider.operators.bcp_export import BcpExportOperator

with DAG(
    dag_id="flux_test_throttle",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux-tests"],
    default_args={"retries": 0},
):
    for name in ("tx", "ty"):
        for i in range(8):
            BcpExportOperator(
                task_id=f"{name}{i}",
                dataset=name,
                schema="dbo",
                table=f"{name}_src",
                engine="dbapi",
                pool=f"flux_{name}",
            )


# Data set ``tf``: six exports whose source deadlocks; its rule fails them and asks the controller to cut
# the pool by a quarter (<throttleDown factor="0.25"/>), not by the default graded decrease.
with DAG(
    dag_id="flux_test_throttle_factor",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux-tests"],
):
    from flux_provider.recovery import Fail, Match, Recovery, Rule, ThrottleDown

    quarter = Recovery(
        rules=(
            Rule(
                Match(number=1205),
                (Fail(), ThrottleDown(factor=0.25)),
                name="deadlock: cut to a quarter",
            ),
        )
    )
    for i in range(6):
        BcpExportOperator(
            task_id=f"tf{i}",
            dataset="tf",
            schema="dbo",
            table="tf_src",
            engine="dbapi",
            pool="flux_tf",
            recovery=quarter,
        )
