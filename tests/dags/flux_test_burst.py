"""DAG for the burst test (bundle ``flux-tests``): 200 runs triggered within seconds through the REST API.

Each run's one task really runs on the executor and returns the number its run was triggered with, so the test
can tell that every run did its own work, not only that Airflow marked it done."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

with DAG(
    dag_id="flux_test_burst",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=200,
    tags=["flux", "test"],
):

    @task
    def echo(params=None, dag_run=None) -> int:
        return int(dag_run.conf["n"])

    echo()
