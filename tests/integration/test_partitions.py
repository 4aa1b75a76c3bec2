"""Asset partitions under the real scheduler: two dimensions that write a day each and a fact that waits for
that day from both. The fact does not start on one dimension's day; it starts once, for the day, when the
second has written it, and joins both dimensions' snapshots of that day. A manual run with conf ``day``
loads that partition and records it; a week's backfill through Airflow's own API makes one run per day
(seven exact partitions), in the data set's pool and within the backfill's runs at once, and the fact
follows each day.

The data sets start tomorrow (``<schedule start>``), so the scheduler makes no run of its own beside the
test's: every run here is a manual one or a backfill's."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import bindparam, text

from flux_devstack.tds.seed import load_seed
from tests.support import RUN_DIR
from tests.support.stack import pools_sync, records
from tests.support.throttle import concurrency_ok, events, stack_db

pytestmark = pytest.mark.stack

SPECS = RUN_DIR / "fleet" / "specs"
TODAY = dt.datetime.now(dt.timezone.utc).date()
TOMORROW = (TODAY + dt.timedelta(days=1)).isoformat()
DIM_ROWS = {"a": [(1, "one"), (2, "two"), (3, "three")], "b": [(1, "uno"), (2, "dos"), (3, "tres")]}
FACT_IDS = [1, 2, 2, 3, 9]  # 9 has no dimension row: the inner joins drop it


def dimension(name: str, table: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<dataset name="{name}">
  <owner>flux-tests</owner>
  <source schema="dbo" table="{table}"/>
  <export engine="bcp" mode="streaming"/>
  <s3 location="s3://flux/tests/{name}"/>
  <hive database="flux_tests" targetTable="{name}" createDatabase="true">
    <column name="id" type="INT"/>
    <column name="label" type="STRING"/>
    <partition name="snapshot_day" type="STRING" value="{{{{ flux_day }}}}"/>
    <transform>SELECT id, label FROM {{{{ staging }}}}</transform>
    <expect rows="staging"/>
  </hive>
  <schedule start="{TOMORROW}" maxActiveRuns="2"><cron>0 2 * * *</cron></schedule>
  <throttle initial="2" min="1" max="2"/>
</dataset>
"""


def fact(name: str, dim_a: str, dim_b: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<dataset name="{name}">
  <owner>flux-tests</owner>
  <source schema="dbo" table="part_fact"/>
  <export engine="bcp" mode="streaming"/>
  <s3 location="s3://flux/tests/{name}"/>
  <hive database="flux_tests" targetTable="{name}" createDatabase="true">
    <column name="id" type="INT"/>
    <column name="a_label" type="STRING"/>
    <column name="b_label" type="STRING"/>
    <partition name="day" type="STRING" value="{{{{ flux_day }}}}"/>
    <transform>
SELECT f.id, a.label AS a_label, b.label AS b_label FROM {{{{ staging }}}} f
JOIN flux_tests.{dim_a} a ON a.id = f.id AND a.snapshot_day = '{{{{ flux_day }}}}'
JOIN flux_tests.{dim_b} b ON b.id = f.id AND b.snapshot_day = '{{{{ flux_day }}}}'
    </transform>
  </hive>
  <schedule maxActiveRuns="2"><after>{dim_a}</after><after>{dim_b}</after></schedule>
  <throttle initial="2" min="1" max="2"/>
</dataset>
"""


@pytest.fixture(scope="module")
def datasets(stack, airflow_client):
    """Two dimensions and a fact in the stack's fleet bundle, their source tables seeded."""
    source = Path(stack.env()["FLUX_MSSQL_DB"])
    load_seed(
        source,
        "DROP TABLE IF EXISTS dbo.part_dim_a;\nCREATE TABLE dbo.part_dim_a (id INT NOT NULL, label VARCHAR(20));\n"
        "DROP TABLE IF EXISTS dbo.part_dim_b;\nCREATE TABLE dbo.part_dim_b (id INT NOT NULL, label VARCHAR(20));\n"
        "DROP TABLE IF EXISTS dbo.part_fact;\nCREATE TABLE dbo.part_fact (id INT NOT NULL);",
    )
    with sqlite3.connect(source) as conn:
        for side, rows in DIM_ROWS.items():
            conn.executemany(f"INSERT INTO part_dim_{side} VALUES (?, ?)", rows)
        conn.executemany("INSERT INTO part_fact VALUES (?)", [(i,) for i in FACT_IDS])
    tag = uuid.uuid4().hex[:6]  # a stack reused from an earlier session holds the runs of its days
    names = {"a": f"pdim_a_{tag}", "b": f"pdim_b_{tag}", "fact": f"pfact_{tag}"}
    for old in [*SPECS.glob("pdim_*.xml"), *SPECS.glob("pfact_*.xml")]:
        old.unlink()
    SPECS.mkdir(parents=True, exist_ok=True)
    (SPECS / f"{names['a']}.xml").write_text(dimension(names["a"], "part_dim_a"))
    (SPECS / f"{names['b']}.xml").write_text(dimension(names["b"], "part_dim_b"))
    (SPECS / f"{names['fact']}.xml").write_text(fact(names["fact"], names["a"], names["b"]))
    pools_sync(stack, SPECS.parent, "--reset")
    for name in names.values():
        airflow_client.wait_for_dag(f"flux_{name}", timeout=180)
        airflow_client.request("PATCH", f"/dags/flux_{name}", json={"is_paused": False})
    return names


def runs(airflow_client, dag_id: str) -> list[dict]:
    return airflow_client.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(2)


def pending_partition(stack, dag_id: str, key: str) -> bool:
    """The scheduler holds a partition run for ``key`` that waits for the rest of its upstreams."""
    with stack_db(stack).connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT COUNT(*) FROM asset_partition_dag_run WHERE target_dag_id = :d AND partition_key = :k "
                    "AND created_dag_run_id IS NULL"
                ),
                {"d": dag_id, "k": key},
            ).scalar()
        )


def finished_runs(airflow_client, dag_id: str, key: str, count: int) -> list[dict] | None:
    """``dag_id``'s runs for partition ``key`` once there are ``count`` and all have finished."""
    found = [r for r in runs(airflow_client, dag_id) if r.get("partition_key") == key]
    return found if len(found) >= count and all(r["state"] in ("success", "failed") for r in found) else None


def fact_rows(name: str, day: str) -> list[tuple]:
    return sorted(records(f"SELECT id, a_label, b_label FROM flux_tests.{name} WHERE day = '{day}'"))


EXPECTED_FACT = sorted(
    (i, dict(DIM_ROWS["a"])[i], dict(DIM_ROWS["b"])[i]) for i in FACT_IDS if i in dict(DIM_ROWS["a"])
)


def test_a_fact_starts_for_a_day_when_both_dimensions_wrote_it_and_again_when_one_corrects_it(
    stack, airflow_client, datasets
):
    """Once, when the second dimension wrote the day. Then a dimension rerun for that day (its rows changed at
    the source): Airflow alone would wait for the other dimension to write the day again; the fact runs again
    now, joining the corrected dimension with the other's rows of that day, and nothing is left waiting."""
    day = (TODAY - dt.timedelta(days=20)).isoformat()
    a, b, fact_dag = (f"flux_{datasets[k]}" for k in ("a", "b", "fact"))
    first = airflow_client.run_dag(a, partition_key=day, timeout=300)
    assert first.state == "success", first.task_states
    # the scheduler took the event and holds the fact's partition run for the other dimension
    wait_until(lambda: pending_partition(stack, fact_dag, day), 60, f"a pending {day} partition run of the fact")
    assert not [r for r in runs(airflow_client, fact_dag) if r.get("partition_key") == day]
    second = airflow_client.run_dag(b, partition_key=day, timeout=300)
    assert second.state == "success", second.task_states
    started = wait_until(
        lambda: [r for r in runs(airflow_client, fact_dag) if r.get("partition_key") == day],
        120,
        f"the fact's run for {day}",
    )
    assert len(started) == 1
    result = airflow_client.wait_for_run(fact_dag, started[0]["dag_run_id"], timeout=300)
    assert result.state == "success", result.task_states
    assert fact_rows(datasets["fact"], day) == EXPECTED_FACT  # both dimensions' rows of that day, once
    assert len([r for r in runs(airflow_client, fact_dag) if r.get("partition_key") == day]) == 1

    source = Path(stack.env()["FLUX_MSSQL_DB"])
    with sqlite3.connect(source) as conn:
        conn.execute("UPDATE part_dim_a SET label = 'ONE' WHERE id = 1")
    try:
        assert airflow_client.run_dag(a, partition_key=day, timeout=300).state == "success"
        wait_until(lambda: finished_runs(airflow_client, fact_dag, day, 2), 300, f"the fact's second run for {day}")
    finally:
        with sqlite3.connect(source) as conn:
            conn.execute("UPDATE part_dim_a SET label = 'one' WHERE id = 1")
    day_runs = [r for r in runs(airflow_client, fact_dag) if r.get("partition_key") == day]
    assert [r["state"] for r in day_runs] == ["success", "success"]
    corrected = sorted((i, "ONE" if i == 1 else a_label, b_label) for i, a_label, b_label in EXPECTED_FACT)
    assert fact_rows(datasets["fact"], day) == corrected
    assert not pending_partition(stack, fact_dag, day)


def test_a_manual_run_with_conf_day_loads_and_records_that_partition(airflow_client, datasets):
    day = (TODAY - dt.timedelta(days=25)).isoformat()
    dag_id = f"flux_{datasets['a']}"
    run = airflow_client.run_dag(dag_id, conf={"day": day}, timeout=300)
    assert run.state == "success", run.task_states
    count = records(f"SELECT COUNT(*) FROM flux_tests.{datasets['a']} WHERE snapshot_day = '{day}'")
    assert count == [(len(DIM_ROWS["a"]),)]
    events = airflow_client.asset_events(dag_id, run.run_id)
    assert [(e["partition_key"], e["extra"].get("day")) for e in events] == [(day, day)]


def test_a_weeks_backfill_loads_seven_exact_partitions_and_the_fact_follows(stack, airflow_client, datasets):
    first, last = TODAY - dt.timedelta(days=12), TODAY - dt.timedelta(days=6)
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range(7)]
    fact_dag = f"flux_{datasets['fact']}"
    backfills = {}
    for side in ("a", "b"):
        dag_id = f"flux_{datasets[side]}"
        backfills[side] = airflow_client.request(
            "POST",
            "/backfills",
            json={
                "dag_id": dag_id,
                "from_date": f"{first.isoformat()}T00:00:00Z",
                "to_date": f"{last.isoformat()}T00:00:00Z",
                "max_active_runs": 2,  # the spec's maxActiveRuns
            },
        ).json()
    for side in ("a", "b"):
        dag_id = f"flux_{datasets[side]}"

        def done(dag_id=dag_id):
            found = [r for r in runs(airflow_client, dag_id) if r["run_type"] == "backfill"]
            return found if len(found) == 7 and all(r["state"] in ("success", "failed") for r in found) else None

        backfill_runs = wait_until(done, 600, f"the backfill of {dag_id}")
        assert sorted(r["partition_key"] for r in backfill_runs) == days
        assert {r["state"] for r in backfill_runs} == {"success"}
        partitions = {row[0] for row in records(f"SHOW PARTITIONS flux_tests.{datasets[side]}")}
        assert {f"snapshot_day={d}" for d in days} <= partitions
        for d in days:
            count = records(f"SELECT COUNT(*) FROM flux_tests.{datasets[side]} WHERE snapshot_day = '{d}'")
            assert count == [(len(DIM_ROWS[side]),)], d
        _within_the_pool_and_the_runs_at_once(stack, dag_id, datasets[side], backfill_runs)
        shown = {
            p["key"]: p
            for p in airflow_client.plugin("GET", f"/flux/api/datasets/{datasets[side]}").json()["partitions"]
        }  # the data set's page in the dashboard
        assert {d: (shown[d]["state"], shown[d]["rows"]) for d in days} == {d: ("success", 3) for d in days}

    def followed():
        found = [r for r in runs(airflow_client, fact_dag) if r.get("partition_key") in days]
        return found if len(found) == 7 and all(r["state"] in ("success", "failed") for r in found) else None

    fact_runs = wait_until(followed, 600, "the fact's runs for the backfilled days")
    assert sorted(r["partition_key"] for r in fact_runs) == days and {r["state"] for r in fact_runs} == {"success"}
    for d in days:
        assert fact_rows(datasets["fact"], d) == EXPECTED_FACT, d


def _within_the_pool_and_the_runs_at_once(stack, dag_id: str, dataset: str, backfill_runs: list[dict]) -> None:
    query = text("SELECT queued_dttm, end_date, pool FROM task_instance WHERE dag_id = :d AND run_id IN :r").bindparams(
        bindparam("r", expanding=True)
    )
    with stack_db(stack).connect() as conn:
        tis = conn.execute(query, {"d": dag_id, "r": [r["dag_run_id"] for r in backfill_runs]}).all()
    assert len(tis) == 7 * 3 and {t.pool for t in tis} == {f"flux_{dataset}"}
    spans = [{"queued_when": t.queued_dttm.isoformat(), "end_date": t.end_date.isoformat()} for t in tis]
    concurrency_ok(spans, events(stack, dataset), 2)  # never more than the pool's slots of the moment
    moments = [
        (dt.datetime.fromisoformat(r["start_date"]), dt.datetime.fromisoformat(r["end_date"])) for r in backfill_runs
    ]
    for start, _ in moments:
        assert sum(1 for s, e in moments if s <= start < e) <= 2  # the backfill's runs at once
