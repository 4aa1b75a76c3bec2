"""DAG for the controller-signal tests (bundle ``flux-tests``): tries whose outcome the controller must
record exactly, each task in a pool of its own data set.

* ``retried`` (data set ``ts``): the test injects a deadlock (1205) for try 1 and "busy" (40501) for
  try 2; the rules retry each after 1 s, so the next try starts (and clears the XCom) before the
  controller's next period; try 3 succeeds;
* ``killed`` (data set ``tk``): every try kills its own process with SIGKILL (what the OOM killer does), and
  it has no retry: the try is lost and cannot be given back;
* ``lost_once`` (data set ``tl``): try 1 kills its own process, try 2 is a deadlock victim, try 3 succeeds. Its
  rule retries a deadlock once: the lost try must be given back (the controller, within a period: Airflow
  waits 25 s before try 2) and not counted by the rule, or try 2 fails the task;
* ``doomed`` (data set ``td``): a missing table, failed at once; ``after_doomed`` never runs.
"""

from __future__ import annotations

import datetime as dt
import os
import signal

import pendulum
from airflow.sdk import DAG

from flux_provider.errors import ErrorClass, FluxTransientError
from flux_provider.operators.base import FluxOperator
from flux_provider.operators.bcp_export import BcpExportOperator
from flux_provider.recovery import Match, Recovery, Retry, Rule


class LostOnceOperator(FluxOperator):
    """Killed on try 1, a deadlock victim on try 2, done on try 3."""

    step = "export"

    def __init__(self, *, dataset: str, **kwargs):
        super().__init__(**kwargs)
        self.dataset = dataset

    def work(self, context):
        number = context["ti"].try_number
        if number == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        if number == 2:
            raise FluxTransientError(
                "chosen as deadlock victim", error_class=ErrorClass.DEADLOCK, dataset=self.dataset, step=self.step
            )
        return {"try": number}


class KilledOperator(FluxOperator):
    """Dies like a task the OOM killer picked: no exception, no rule, no XCom."""

    step = "export"

    def __init__(self, *, dataset: str, **kwargs):
        super().__init__(**kwargs)
        self.dataset = dataset

    def work(self, context):
        os.kill(os.getpid(), signal.SIGKILL)


with DAG(
    dag_id="flux_test_signal",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux-tests"],
):
    quick = Recovery(
        rules=(
            Rule(Match(number=1205), (Retry(count=3, delay_seconds=1),), name="deadlock"),
            Rule(Match(number=40501), (Retry(count=3, delay_seconds=1),), name="busy"),
        )
    )
    BcpExportOperator(
        task_id="retried", dataset="ts", schema="dbo", table="ts_src", engine="dbapi", pool="flux_ts", recovery=quick
    )
    KilledOperator(task_id="killed", dataset="tk", pool="flux_tk", retries=0)
    LostOnceOperator(
        task_id="lost_once",
        dataset="tl",
        pool="flux_tl",
        recovery=Recovery(rules=(Rule(Match(error_class="deadlock"), (Retry(count=1, delay_seconds=1),)),)),
        retry_delay=dt.timedelta(seconds=25),  # Airflow's wait after the lost try: longer than a period
    )
    doomed = BcpExportOperator(
        task_id="doomed", dataset="td", schema="dbo", table="td_missing", engine="dbapi", pool="flux_td"
    )
    doomed >> BcpExportOperator(
        task_id="after_doomed", dataset="td", schema="dbo", table="td_missing", engine="dbapi", pool="flux_td"
    )


# Data set ``tr``: one export of a few seconds, for the test that stops the scheduler while it runs.
with DAG(
    dag_id="flux_test_resume",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flux-tests"],
):
    BcpExportOperator(task_id="resumed", dataset="tr", schema="dbo", table="tr_src", engine="dbapi", pool="flux_tr")
