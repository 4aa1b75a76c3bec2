"""A fact runs again for a day that one of its upstreams rewrote after the fact had read it.

A fact data set waits for a partition from every upstream it joins (``<after>`` on partitioned data sets:
Airflow's ``PartitionedAssetTimetable`` over ``AssetAll``). Airflow keeps a provisional run per target DAG and
partition key (``asset_partition_dag_run``) and the events that count toward it
(``partitioned_asset_key_log``); the run starts once every upstream has an event for the key. When one
dimension is rerun for a day the fact already loaded (a correction: its rows changed), Airflow opens a new
provisional run that waits for *every* upstream to write that day again, so the fact would stay stale.

Each controller period, for every such provisional run of a flux DAG (a pending one, for a key the same DAG
already ran for), the events it lacks are taken from the run before it: the other upstreams' latest writes of
that day, which they have not rewritten. Airflow's scheduler then starts the run at its next loop, as any
asset-triggered partition run, consuming the new event and the kept ones.

While a DAG that writes one of the lacking upstreams has a run queued or running, the provisional run waits:
that write is coming, and Airflow completes the run with it. A day whose upstreams are all rerun together (a
reload, ``make demo`` again) runs the fact once, after the last of them; a day that upstreams rewrite one after
the other, each alone, runs the fact once per rewrite.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import and_, func, insert, select
from sqlalchemy.orm import aliased

log = logging.getLogger(__name__)

#: The tag every flux DAG carries (``flux_provider.specs.render``): only flux DAGs are completed.
TAG = "flux"


@dataclass(frozen=True)
class Correction:
    """A provisional run of ``dag_id`` for ``partition_key`` completed with the events it lacked."""

    dag_id: str
    partition_key: str
    kept: tuple[str, ...]  # the assets whose earlier events it reuses


def complete_corrections(session, at: dt.datetime) -> list[Correction]:
    """Complete the provisional partition runs that corrections left waiting (see the module)."""
    from airflow.models.asset import AssetModel, PartitionedAssetKeyLog

    keylog = PartitionedAssetKeyLog
    done: list[Correction] = []
    for row in _corrections_waiting(session):
        columns = (keylog.asset_id, keylog.asset_event_id, keylog.source_partition_key, keylog.target_partition_key)
        have = {
            (r.asset_id, r.source_partition_key)
            for r in session.execute(select(*columns).where(keylog.asset_partition_dag_run_id == row.id))
        }
        lacking = [
            r
            for r in session.execute(select(*columns).where(keylog.asset_partition_dag_run_id == row.before))
            if (r.asset_id, r.source_partition_key) not in have
        ]
        if not lacking or _rewrite_coming(session, {r.asset_id for r in lacking}):
            continue
        session.execute(
            insert(keylog),
            [
                {
                    "asset_id": r.asset_id,
                    "asset_event_id": r.asset_event_id,
                    "asset_partition_dag_run_id": row.id,
                    "source_partition_key": r.source_partition_key,
                    "target_dag_id": row.target_dag_id,
                    "target_partition_key": r.target_partition_key,
                    "created_at": at,
                }
                for r in lacking
            ],
        )
        names = session.scalars(
            select(AssetModel.name).where(AssetModel.id.in_({r.asset_id for r in lacking})).order_by(AssetModel.name)
        ).all()
        done.append(Correction(row.target_dag_id, row.partition_key, tuple(names)))
        log.info(
            "flux corrections: %s partition %s was rewritten upstream after it ran: running it again with the "
            "latest writes of %s",
            row.target_dag_id,
            row.partition_key,
            ", ".join(names),
        )
    return done


def _rewrite_coming(session, asset_ids: set[int]) -> bool:
    """Whether a DAG that writes one of ``asset_ids`` has a run queued or running."""
    from airflow.models.asset import TaskOutletAssetReference as outlet
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState

    in_flight = (
        select(DagRun.id)
        .join(outlet, outlet.dag_id == DagRun.dag_id)
        .where(outlet.asset_id.in_(asset_ids), DagRun.state.in_((DagRunState.QUEUED, DagRunState.RUNNING)))
    )
    return session.execute(in_flight.limit(1)).first() is not None


def _corrections_waiting(session) -> list:
    """Pending provisional runs of flux DAGs for a key the DAG already ran for: (id, target_dag_id,
    partition_key, before), ``before`` the latest provisional run of that key that made a run."""
    from airflow.models.asset import AssetPartitionDagRun as apdr
    from airflow.models.dag import DagTag

    ran = aliased(apdr)
    return session.execute(
        select(apdr.id, apdr.target_dag_id, apdr.partition_key, func.max(ran.id).label("before"))
        .join(DagTag, and_(DagTag.dag_id == apdr.target_dag_id, DagTag.name == TAG))
        .join(
            ran,
            and_(
                ran.target_dag_id == apdr.target_dag_id,
                ran.partition_key == apdr.partition_key,
                ran.created_dag_run_id.is_not(None),
                ran.id < apdr.id,
            ),
        )
        .where(apdr.created_dag_run_id.is_(None))
        .group_by(apdr.id, apdr.target_dag_id, apdr.partition_key)
    ).all()
