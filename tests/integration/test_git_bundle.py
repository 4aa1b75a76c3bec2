"""The bundle deployed from git: the stack's ``flux-git`` bundle is Airflow's GitDagBundle on a local
repository (``.devstack-test/git/flux-bundle.git``, made by conftest), tracking ``main``, subdir ``dags``.

A data set is committed and pushed; a run starts on that commit; a changed spec is committed while the run is
in flight. The run finishes with the spec of its own commit (bundle versioning), the next run with the new one.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from flux_devstack.tds.seed import load_seed
from tests.support import RUN_DIR
from tests.support.git_bundle import commit, ensure_repository
from tests.support.stack import inject_fault, pools_sync, records
from tests.support.throttle import stack_db

pytestmark = pytest.mark.stack

SPEC = """<?xml version="1.0" encoding="UTF-8"?>
<dataset name="git_bundle">
  <owner>flux-tests</owner>
  <source schema="dbo" table="git_src"/>
  <export engine="bcp" mode="streaming"/>
  <s3 location="s3://flux/tests/git_bundle"/>
  <hive database="flux_tests" targetTable="git_bundle" createDatabase="true">
    <column name="id" type="INT"/>
    <column name="txt" type="STRING"/>
    <transform>SELECT id, {txt} AS txt FROM {{{{ staging }}}}</transform>
    <expect rows="staging"/>
  </hive>
  <schedule><preset>none</preset></schedule>
  <throttle initial="1" min="1" max="2"/>
</dataset>
"""
DAG_FILE = '''"""Data set git_bundle, deployed from git (tests/integration/test_git_bundle.py)."""

from airflow.sdk import DAG

from flux_provider.specs.factory import dag_for

dag: DAG = dag_for(__file__)
'''


def write(work: Path, txt_expression: str) -> None:
    (work / "dags" / "specs").mkdir(parents=True, exist_ok=True)
    (work / "dags" / "specs" / "git_bundle.xml").write_text(SPEC.format(txt=txt_expression))
    (work / "dags" / "git_bundle.py").write_text(DAG_FILE)


def dag_version(db) -> str | None:
    with db.connect() as conn:
        return conn.execute(text("SELECT bundle_version FROM dag WHERE dag_id = 'flux_git_bundle'")).scalar()


def wait_for_version(db, sha: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while dag_version(db) != sha:
        assert time.monotonic() < deadline, f"the DAG is at {dag_version(db)}, not the pushed {sha}"
        time.sleep(2)


def test_a_spec_committed_during_a_run_changes_only_the_runs_after_it(stack, airflow_client):
    db = stack_db(stack)
    work = ensure_repository(RUN_DIR / "git" / "flux-bundle.git")
    source = Path(stack.env()["FLUX_MSSQL_DB"])
    load_seed(
        source, "DROP TABLE IF EXISTS dbo.git_src;\nCREATE TABLE dbo.git_src (id INT NOT NULL, txt NVARCHAR(20));"
    )
    with sqlite3.connect(source) as conn:
        conn.executemany("INSERT INTO git_src VALUES (?, ?)", [(i, f"row {i}") for i in range(12)])
        conn.execute("DELETE FROM flux_faults WHERE pattern = 'git_src'")
    write(work, "txt")
    first = commit(work, "git_bundle: copy txt")
    pools_sync(stack, work / "dags")  # the deploy job's step: the data set's pool (from the repository's checkout)
    wait_for_version(db, first)

    # the export query waits until the fault is deleted below (at most 300 s): the run is in flight
    inject_fault(stack, "git_src", remaining=1, delay_seconds=300)
    try:
        run_id = airflow_client.trigger("flux_git_bundle")
        write(work, "upper(txt)")
        second = commit(work, "git_bundle: upper-case txt")
        wait_for_version(db, second)
        with db.connect() as conn:
            state = conn.execute(
                text("SELECT state FROM dag_run WHERE dag_id = 'flux_git_bundle' AND run_id = :r"), {"r": run_id}
            ).scalar()
        assert state == "running", "the run ended before the new commit was parsed: the test proves nothing"
    finally:
        with sqlite3.connect(source) as conn:
            conn.execute("DELETE FROM flux_faults WHERE pattern = 'git_src'")
    result = airflow_client.wait_for_run("flux_git_bundle", run_id, timeout=600)
    assert result.state == "success", result.task_states
    assert sorted(r[0] for r in records("SELECT txt FROM flux_tests.git_bundle"))[:2] == ["row 0", "row 1"]

    after = airflow_client.run_dag("flux_git_bundle", timeout=600)
    assert after.state == "success", after.task_states
    assert sorted(r[0] for r in records("SELECT txt FROM flux_tests.git_bundle"))[:2] == ["ROW 0", "ROW 1"]
    with db.connect() as conn:
        versions = dict(
            conn.execute(
                text(
                    "SELECT run_id, bundle_version FROM dag_run WHERE dag_id = 'flux_git_bundle' AND run_id IN (:a, :b)"
                ),
                {"a": run_id, "b": after.run_id},
            ).all()
        )
    assert versions == {run_id: first, after.run_id: second}
