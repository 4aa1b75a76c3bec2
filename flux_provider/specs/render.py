"""Render a :class:`~flux_provider.specs.plan.DagPlan` as an Airflow DAG: the one place plans meet Airflow.

Every task runs in the data set's pool with the data set's recovery rules (which
also set its retries and their delays) and its stage's priority (absolute weights:
a run under way outranks runs that have not started); a task mapped over the split plan gets
them here, because the scheduler reads a mapped task's retries before the
operator exists.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset
from airflow.timetables.interval import CronDataIntervalTimetable

from flux_provider.operators.base import lost_try_retry_delay
from flux_provider.operators.bcp_export import BcpExportOperator
from flux_provider.operators.bcp_to_s3 import BcpToS3Operator
from flux_provider.operators.hive_transform import HiveTransformOperator
from flux_provider.operators.partition_refresh import PartitionRefreshOperator
from flux_provider.operators.publish_run import PublishRunOperator
from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator
from flux_provider.operators.split_plan import SplitPlanOperator
from flux_provider.recovery import Recovery, RecoveryPolicy
from flux_provider.specs import partitions
from flux_provider.specs.model import DatasetSpec
from flux_provider.specs.plan import AssetPlan, DagPlan, SchedulePlan, TaskPlan, asset_name, asset_plan
from flux_provider.specs.timetable import CalendarCronDataInterval, CalendarCronTrigger, PartitionCron

OPERATOR_CLASSES = {
    cls.__name__: cls
    for cls in (
        BcpExportOperator,
        S3ChunkUploadOperator,
        BcpToS3Operator,
        SplitPlanOperator,
        PublishRunOperator,
        HiveTransformOperator,
        PartitionRefreshOperator,
    )
}


def asset(plan: AssetPlan) -> Asset:
    return Asset(name=plan.name, group="flux", extra=dict(plan.extra))


def asset_for(spec: DatasetSpec) -> Asset:
    """The data set's Asset ``flux.<name>`` (see :func:`~flux_provider.specs.plan.asset_plan`)."""
    return asset(asset_plan(spec))


def _mapper(upstream_grain: str, grain: str):
    """How an upstream's partition keys map to this data set's: the same key, or 24 hours roll up to a day."""
    from airflow.sdk import DayWindow, IdentityMapper, RollupMapper, StartOfDayMapper

    if upstream_grain == grain:
        return IdentityMapper()
    return RollupMapper(
        upstream_mapper=StartOfDayMapper(input_format=partitions.KEY_FORMATS[upstream_grain]), window=DayWindow()
    )


def _partitioned_after(plan: SchedulePlan):
    """A run per partition, once every partitioned data set it waits for wrote that partition."""
    from airflow.sdk import AssetAll, PartitionedAssetTimetable

    refs = {name: Asset.ref(name=asset_name(name)) for name, _ in plan.waits_for}
    return PartitionedAssetTimetable(
        assets=AssetAll(*refs.values()),
        partition_mapper_config={refs[name]: _mapper(grain, plan.grain) for name, grain in plan.waits_for},
    )


def schedule(plan: SchedulePlan):
    if plan.kind == "after" and plan.grain:
        return _partitioned_after(plan)
    if plan.kind == "after":
        return [Asset.ref(name=asset_name(name)) for name in plan.after]
    if plan.grain:
        return PartitionCron(plan.cron, timezone=plan.timezone, grain=plan.grain, calendar=plan.calendar)
    if plan.kind == "calendar_interval":
        return CalendarCronDataInterval(plan.cron, plan.timezone, calendar=plan.calendar)
    if plan.kind == "calendar":
        return CalendarCronTrigger(plan.cron, timezone=plan.timezone, calendar=plan.calendar)
    if plan.kind == "cron_interval":
        return CronDataIntervalTimetable(plan.cron, timezone=plan.timezone)
    return plan.cron


def _deadline(plan: DagPlan):
    """The plan's ``DeadlineAlert``, or None. Its module registers a custom deadline reference, which loads
    Airflow's deadline models (a quarter of a CPU second): only DAG files of specs with a deadline pay that."""
    if plan.deadline is None:
        return None
    from flux_provider.deadlines import alert_for

    return alert_for(plan.deadline, dataset=plan.dataset, emails=plan.emails, webhooks=plan.webhooks)


def render(plan: DagPlan, *, priorities: bool = True) -> DAG:
    """The DAG of ``plan``, which holds all it needs. ``priorities=False``: Airflow's default weight rule,
    not the plan's stage priorities."""
    recovery = Recovery(rules=plan.rules, emails=plan.emails, webhooks=plan.webhooks)
    with DAG(
        dag_id=plan.dag_id,
        description=plan.description,
        schedule=schedule(plan.schedule),
        start_date=pendulum.parse(plan.schedule.start, tz=plan.schedule.timezone),
        catchup=plan.schedule.catchup,
        max_active_runs=plan.schedule.max_active_runs,  # each run transforms through a staging view of its own
        doc_md=plan.doc,
        tags=["flux", f"owner:{plan.owner}"],
        # retries, delays and alerts come from the recovery rules (flux_provider.recovery)
        default_args={"owner": plan.owner},
        params={"flux_spec": plan.spec_file},
        deadline=_deadline(plan),
    ) as dag:
        tasks = {}
        for task in plan.tasks:
            tasks[task.task_id] = _operator(task, plan, recovery, tasks, priorities)
            for up in task.upstream:
                tasks[up] >> tasks[task.task_id]
    return dag


def _operator(task: TaskPlan, plan: DagPlan, recovery: Recovery, tasks: dict, priorities: bool = True):
    cls = OPERATOR_CLASSES[task.operator]
    args = task.args.kwargs()  # the record's fields are the operator's parameters
    outlets = [Asset.ref(name=name) if name != plan.asset.name else asset(plan.asset) for name in task.outlets]
    if outlets:
        args["outlets"] = outlets
    common = dict(
        dataset=plan.dataset,
        pool=task.pool,
        pool_slots=task.pool_slots,
        recovery=recovery,
        partition_grain=plan.schedule.grain,
    )
    if priorities:  # a started run finishes before other runs start (flux_provider.specs.priorities)
        common.update(priority_weight=task.priority_weight, weight_rule="absolute")
    if task.mapped_over is None:
        return cls(task_id=task.task_id, **common, **args)
    return cls.partial(
        task_id=task.task_id,
        map_index_template="{{ task.part['name'] }}",
        retries=recovery.max_retries,
        retry_delay=lost_try_retry_delay(),
        retry_policy=RecoveryPolicy(recovery),
        **common,
        **args,
    ).expand(part=tasks[task.mapped_over].output)


__all__ = ["asset_for", "render"]
