"""Freshness deadlines on the stack: a spec's ``<deadline>`` is an Airflow deadline alert. A run still going
when its deadline passes alerts the spec's channels (a real local webhook receiver and a real local SMTP
server); a run that finishes in time alerts nobody and its deadline is dropped."""

from __future__ import annotations

import mailbox
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from flux_devstack.tds.seed import load_seed
from tests.support import RUN_DIR
from tests.support.stack import inject_fault, pools_sync, wait_until
from tests.support.throttle import stack_db
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.stack

SPECS = RUN_DIR / "fleet" / "specs"  # the stack's bundle of generated data sets (flux-fleet)


def spec(name: str, deadline: str, webhook: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<dataset name="{name}">
  <owner>flux-tests</owner>
  <alerts><email>oncall@example.com</email><webhook>{webhook}</webhook></alerts>
  <source schema="dbo" table="{name}_src"/>
  <export engine="bcp" mode="streaming"/>
  <s3 location="s3://flux/tests/{name}"/>
  <hive database="flux_tests" targetTable="{name}" createDatabase="true">
    <column name="id" type="INT"/>
    <transform>SELECT id FROM {{{{ staging }}}}</transform>
  </hive>
  <schedule><preset>none</preset></schedule>
  {deadline}
</dataset>
"""


def run_deadlines(db, name: str, run_id: str) -> list:
    """The ``deadline`` rows Airflow holds for one run of ``flux_<name>``."""
    query = text(
        "SELECT d.missed FROM deadline d JOIN dag_run r ON r.id = d.dagrun_id WHERE r.dag_id = :d AND r.run_id = :r"
    )
    with db.connect() as conn:
        return conn.execute(query, {"d": f"flux_{name}", "r": run_id}).all()


def ten_row_sources(stack, *names: str) -> Path:
    """A source table ``<name>_src`` of ten ids per name in the stack's SQL Server stand-in; its database."""
    source = Path(stack.env()["FLUX_MSSQL_DB"])
    load_seed(
        source,
        "".join(f"DROP TABLE IF EXISTS dbo.{t}_src;\nCREATE TABLE dbo.{t}_src (id INT NOT NULL);\n" for t in names),
    )
    with sqlite3.connect(source) as conn:
        for table in names:
            conn.executemany(f"INSERT INTO {table}_src VALUES (?)", [(i,) for i in range(10)])
    return source


def test_a_run_past_its_deadline_alerts_by_webhook_and_email_and_one_in_time_alerts_nobody(
    stack, airflow_client, unique
):
    db = stack_db(stack)
    late_name, kept_name = f"late_{unique[:6]}", f"kept_{unique[:6]}"  # new DAGs: never an older parse
    source = ten_row_sources(stack, late_name, kept_name)
    mail = mailbox.Maildir(stack.env()["FLUX_MAILDIR"])  # the stack's mail sink (a real SMTP server)
    mailed_before = {key for key in mail.keys()}
    with WebhookReceiver() as webhook:
        SPECS.mkdir(parents=True, exist_ok=True)
        for old in [*SPECS.glob("late_*.xml"), *SPECS.glob("kept_*.xml")]:
            old.unlink()  # of an earlier run of this test
        (SPECS / f"{late_name}.xml").write_text(spec(late_name, '<deadline withinMinutes="0.2"/>', webhook.url))
        (SPECS / f"{kept_name}.xml").write_text(spec(kept_name, '<deadline withinMinutes="10"/>', webhook.url))
        pools_sync(stack, SPECS.parent)
        airflow_client.wait_for_dag(f"flux_{late_name}", timeout=120)
        airflow_client.wait_for_dag(f"flux_{kept_name}", timeout=120)

        inject_fault(
            stack, f"{late_name}_src", remaining=1, delay_seconds=60
        )  # the export outlives the deadline (12 s)
        try:
            late = airflow_client.trigger(f"flux_{late_name}")
            wait_until(
                lambda: [h for h in webhook.received if h.get("dataset") == late_name],
                120,
                "a deadline alert reached the webhook",
            )
        finally:
            with sqlite3.connect(source) as conn:
                conn.execute("DELETE FROM flux_faults WHERE pattern = ?", (f"{late_name}_src",))
        (alert,) = [h for h in webhook.received if h.get("dataset") == late_name]
        assert (
            alert["event"] == "deadline missed" and alert["run_id"] == late and alert["dag_id"] == f"flux_{late_name}"
        )
        assert "0.2 minutes" in alert["due"]
        (sent,) = wait_until(
            lambda: [mail[k] for k in mail.keys() if k not in mailed_before and late_name in mail[k]["Subject"]],
            60,
            "a deadline e-mail reached the SMTP server",
        )
        assert sent["To"] == "oncall@example.com" and "missed its deadline" in sent["Subject"]
        assert late in sent.get_payload(decode=True).decode()  # the run, in the body
        assert (
            airflow_client.wait_for_run(f"flux_{late_name}", late, timeout=300).state == "success"
        )  # late, not failed

        kept = airflow_client.run_dag(f"flux_{kept_name}", timeout=300)
        assert kept.state == "success"
        # a run that finished in time drops its deadline: no alert can come for it after that
        wait_until(lambda: run_deadlines(db, kept_name, kept.run_id) == [], 60, "the kept run dropped its deadline")
        assert not [h for h in webhook.received if h.get("dataset") == kept_name]
        assert [bool(r.missed) for r in run_deadlines(db, late_name, late)] == [True]
