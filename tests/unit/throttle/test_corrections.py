"""A corrected upstream day runs the fact again: the provisional partition run a correction leaves waiting is
completed with the other upstreams' earlier events, on Airflow's own tables (the ORM's schema, on SQLite) as the
scheduler writes them. The run itself under the real scheduler: ``tests/integration/test_partitions.py``."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from flux_provider.throttle.corrections import complete_corrections

AT = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
DAY = "2026-11-20"


def fill(engine, *, tag: str = "flux") -> None:
    """Dimensions a and b wrote DAY, the fact ran for it (provisional run 1, run 7); then a rewrote DAY
    (provisional run 2, waiting for b). A fourth: a day only a wrote (provisional run 3, not a correction)."""
    from airflow.models.asset import AssetEvent, AssetModel, AssetPartitionDagRun, PartitionedAssetKeyLog
    from airflow.models.dag import DagTag

    with engine.begin() as conn:
        conn.execute(insert(DagTag.__table__), [{"dag_id": "flux_fact", "name": tag}])
        conn.execute(
            insert(AssetModel.__table__),
            [
                {
                    "id": i,
                    "name": f"flux.{n}",
                    "uri": f"flux.{n}",
                    "group": "flux",
                    "extra": {},
                    "created_at": AT,
                    "updated_at": AT,
                }
                for i, n in ((1, "a"), (2, "b"))
            ],
        )
        events = [(11, 1), (12, 2), (13, 1), (14, 1)]  # a and b for DAY, a's rewrite of DAY, a for another day
        conn.execute(
            insert(AssetEvent.__table__),
            [{"id": e, "asset_id": a, "extra": {}, "timestamp": AT} for e, a in events],
        )
        conn.execute(
            insert(AssetPartitionDagRun.__table__),
            [
                {"id": 1, "target_dag_id": "flux_fact", "partition_key": DAY, "created_dag_run_id": 7},
                {"id": 2, "target_dag_id": "flux_fact", "partition_key": DAY, "created_dag_run_id": None},
                {"id": 3, "target_dag_id": "flux_fact", "partition_key": "2026-11-21", "created_dag_run_id": None},
            ],
        )
        logs = [(1, 11, 1, DAY), (1, 12, 2, DAY), (2, 13, 1, DAY), (3, 14, 1, "2026-11-21")]
        conn.execute(
            insert(PartitionedAssetKeyLog.__table__),
            [
                {
                    "asset_partition_dag_run_id": r,
                    "asset_event_id": e,
                    "asset_id": a,
                    "source_partition_key": k,
                    "target_dag_id": "flux_fact",
                    "target_partition_key": k,
                    "created_at": AT,
                }
                for r, e, a, k in logs
            ],
        )


def logged(engine, apdr: int) -> list[tuple[int, int]]:
    from airflow.models.asset import PartitionedAssetKeyLog as log

    with engine.connect() as conn:
        rows = conn.execute(select(log.asset_id, log.asset_event_id).where(log.asset_partition_dag_run_id == apdr))
        return sorted(tuple(r) for r in rows)


def test_a_rewritten_day_gets_the_other_upstreams_earlier_events_once(engine):
    fill(engine)
    with Session(engine) as session:
        done = complete_corrections(session, AT)
        session.commit()
    assert [(c.dag_id, c.partition_key, c.kept) for c in done] == [("flux_fact", DAY, ("flux.b",))]
    assert logged(engine, 2) == [(1, 13), (2, 12)]  # a's new write and b's earlier one: the run can start
    assert logged(engine, 3) == [(1, 14)]  # a first write of a day: it still waits for b
    with Session(engine) as session:
        assert complete_corrections(session, AT) == []  # complete: nothing more to add
    assert logged(engine, 2) == [(1, 13), (2, 12)]


def test_a_day_whose_other_upstream_is_being_rewritten_too_waits_for_that_write(engine):
    """A reload of every upstream: b's run is in flight when a's rewrite lands, so the fact waits for b's new
    write (Airflow completes the provisional run with it) instead of running now with b's old one."""
    from airflow.models.asset import TaskOutletAssetReference
    from airflow.models.dagrun import DagRun

    fill(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(TaskOutletAssetReference.__table__),
            [{"asset_id": 2, "dag_id": "flux_b", "task_id": "refresh", "created_at": AT, "updated_at": AT}],
        )
    with Session(engine) as session:
        session.add(DagRun(dag_id="flux_b", run_id="manual__b", run_type="manual", state="running"))
        session.commit()
        assert complete_corrections(session, AT) == []
        assert logged(engine, 2) == [(1, 13)]
        session.execute(DagRun.__table__.update().values(state="success"))
        done = complete_corrections(session, AT)  # b's run ended without a new write: a's correction alone
        session.commit()
    assert [c.kept for c in done] == [("flux.b",)] and logged(engine, 2) == [(1, 13), (2, 12)]


def test_dags_that_are_not_flux_s_keep_airflow_s_rule(engine):
    fill(engine, tag="other")
    with Session(engine) as session:
        assert complete_corrections(session, AT) == []
    assert logged(engine, 2) == [(1, 13)]
