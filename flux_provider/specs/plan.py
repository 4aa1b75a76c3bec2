"""A data set's plan: its DAG as data, between the spec and Airflow (spec -> plan -> DAG).

:func:`plan_for` turns a :class:`~flux_provider.specs.model.DatasetSpec` into a
:class:`DagPlan`: the schedule, the Asset, and each task with its kind, operator,
pool and slots, retries, what it reads and writes, and the arguments its operator
gets. :mod:`flux_provider.specs.render` is the one module that turns a plan into
Airflow objects. A plan imports no Airflow DAG, operator or timetable: it can be
printed (``flux-specs plan NAME``) and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from flux_provider.calendars import Calendar
from flux_provider.retention import Landing
from flux_provider.rules import Rule
from flux_provider.run_report import EXPORT, EXPORT_UPLOAD, PLAN, PUBLISH, REFRESH, TRANSFORM, UPLOAD
from flux_provider.s3_layout import POINTER, RUNS
from flux_provider.specs import partitions, priorities
from flux_provider.specs.dag_doc import doc_md
from flux_provider.specs.model import DatasetSpec, Deadline
from flux_provider.specs.spec_error import SpecError
from flux_provider.specs.task_args import (
    AnyTaskArgs,
    ExportArgs,
    ExportUploadArgs,
    PartArgs,
    PublishArgs,
    RefreshArgs,
    SplitPlanArgs,
    TransformArgs,
    UploadArgs,
)

#: What each kind of task is rendered as.
OPERATORS = {
    "export": "BcpExportOperator",
    "upload": "S3ChunkUploadOperator",
    "export_upload": "BcpToS3Operator",
    "plan": "SplitPlanOperator",
    "export_upload_part": "BcpToS3Operator",
    "publish": "PublishRunOperator",
    "transform": "HiveTransformOperator",
    "refresh": "PartitionRefreshOperator",
}


@dataclass(frozen=True)
class AssetPlan:
    """The data set's Asset: ``flux.<name>``, and where it is published."""

    name: str
    extra: dict[str, str]


@dataclass(frozen=True)
class SchedulePlan:
    """When runs start: ``kind`` is ``after`` (Assets), ``cron``, ``cron_interval`` (a time split's data
    intervals), ``calendar`` / ``calendar_interval`` (business calendar), or ``manual``."""

    kind: str
    cron: str | None = None
    timezone: str = "UTC"
    after: tuple[str, ...] = ()
    start: str = ""
    catchup: bool = False
    max_active_runs: int = 1
    grain: str | None = None  # partitioned by day or hour (flux_provider.specs.partitions); None: not
    waits_for: tuple[tuple[str, str], ...] = ()  # (data set, its grain): each must write the run's partition
    reads_latest: tuple[str, ...] = ()  # data sets <after> names that have no partitions: read as they are
    calendar: Calendar | None = None  # holidays and maintenance windows the runs skip or wait for

    @property
    def key_format(self) -> str | None:
        return partitions.KEY_FORMATS[self.grain] if self.grain else None


@dataclass(frozen=True)
class TaskPlan:
    """One task: its operator's arguments are ``args``, a record of its kind (the renderer adds the data set,
    its pool, priority and recovery rules)."""

    task_id: str
    kind: str
    pool: str
    upstream: tuple[str, ...] = ()
    pool_slots: int = 1
    mapped_over: str | None = None  # the task whose output it is mapped over (one task per part)
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    outlets: tuple[str, ...] = ()  # Asset names it updates
    args: AnyTaskArgs | None = None  # its operator's arguments (flux_provider.specs.task_args)
    priority_weight: int = 1  # Airflow's, under the absolute weight rule (flux_provider.specs.priorities)

    @property
    def operator(self) -> str:
        return OPERATORS[self.kind]


@dataclass(frozen=True)
class DagPlan:
    """A data set's DAG, the whole of what ``specs.render.render`` needs: ``tasks`` in
    dependency order, the recovery rules and alert channels every task gets, the deadline, the docs."""

    dag_id: str
    dataset: str
    owner: str
    description: str
    schedule: SchedulePlan
    asset: AssetPlan
    pool: str
    retries: int  # what the recovery rules' retries need (Airflow's ``retries``)
    tasks: tuple[TaskPlan, ...]
    spec_file: str  # the spec's file name (the DAG's ``flux_spec`` param)
    doc: str  # the DAG's documentation page (markdown)
    rules: tuple[Rule, ...] = ()  # the spec's own recovery rules (the defaults follow them)
    emails: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    deadline: Deadline | None = None

    def task(self, task_id: str) -> TaskPlan:
        return next(t for t in self.tasks if t.task_id == task_id)

    def edges(self) -> list[tuple[str, str]]:
        return [(up, t.task_id) for t in self.tasks for up in t.upstream]

    def text(self) -> str:
        """The plan as a person reads it (what ``flux-specs plan`` prints)."""
        s = self.schedule
        when = {"after": f"after {', '.join(s.after)}", "manual": "manual"}.get(s.kind, f"{s.kind} {s.cron!r}")
        lines = [
            f"{self.dag_id}: data set {self.dataset} (owner {self.owner})",
            f"  schedule: {when} in {s.timezone}, from {s.start}, catchup {s.catchup}, "
            f"at most {s.max_active_runs} run(s) at once",
        ]
        if s.grain:
            lines.append(f"  partitions: one run per {s.grain} (key {s.key_format})")
        if s.waits_for:
            lines.append("  a partition starts when written by: " + ", ".join(f"{n} ({g})" for n, g in s.waits_for))
        if s.reads_latest:
            lines.append(f"  reads as they are (no partitions): {', '.join(s.reads_latest)}")
        lines += [
            f"  asset: {self.asset.name} ({self.asset.extra['published']})",
            f"  pool: {self.pool}; retries up to {self.retries} by the recovery rules"
            + (f"; deadline: {_deadline_text(self.deadline)}" if self.deadline else ""),
        ]
        for t in self.tasks:
            after = f" after {', '.join(t.upstream)}" if t.upstream else ""
            mapped = f", one per part of {t.mapped_over}" if t.mapped_over else ""
            lines.append(
                f"  - {t.task_id}: {t.operator}{mapped}{after}, pool {t.pool} x{t.pool_slots}, "
                f"priority {t.priority_weight}"
            )
            lines += [f"      reads {r}" for r in t.reads] + [f"      writes {w}" for w in t.writes]
            lines += [f"      updates {o}" for o in t.outlets]
        return "\n".join(lines)


def _deadline_text(deadline: Deadline) -> str:
    if deadline.finish_by:
        return f"finish by {deadline.finish_by} {deadline.timezone}"
    return f"finish within {deadline.within_minutes:g} minutes of being queued"


def asset_name(dataset: str) -> str:
    return f"flux.{dataset}"


def asset_plan(spec: DatasetSpec) -> AssetPlan:
    """The data set's Asset ``flux.<name>``: its URI is its name, and where it is published is in ``extra``.

    An ``s3://`` URI would make Airflow load every provider's URI normaliser (boto3 and the S3 hook among
    them) when the DAG file is parsed: about half a CPU second per file, every parse."""
    return AssetPlan(
        name=asset_name(spec.name),
        extra={
            "published": f"{spec.s3_location}/{POINTER}",
            "hive_table": f"{spec.hive.database}.{spec.hive.target_table}",
        },
    )


def specs_beside(spec: DatasetSpec):
    """``name -> the spec of that data set``, read from the spec files beside ``spec`` (None: none there, or
    broken): what :func:`plan_for` is given when the caller has no specs loaded already."""
    from flux_provider.specs.parser import load_spec

    folder = spec.path.parent if spec.path is not None else None

    def load(name: str):
        try:
            return load_spec(folder / f"{name}.xml", check_queries=False) if folder is not None else None
        except (SpecError, OSError):
            return None

    return load


def partitioning(spec: DatasetSpec, load) -> tuple[str | None, tuple[partitions.Upstream, ...]]:
    """The data set's grain and the data sets it waits for, each with theirs; a spec error if they clash."""
    try:
        return partitions.resolve(spec, load)
    except partitions.GrainError as exc:
        from flux_provider.specs.spec_xml import element_line

        line = element_line(spec.path, exc.element) if spec.path else None
        raise SpecError(
            spec.path or spec.name, exc.message, line=line, element=exc.element, fix=exc.fix, dataset=spec.name
        ) from None


def schedule_plan(spec: DatasetSpec, load) -> SchedulePlan:
    schedule, split = spec.schedule, spec.source.split
    grain, upstreams = partitioning(spec, load)
    kind = "manual"
    if schedule.after:
        kind = "after"
    elif schedule.cron and spec.calendar is not None and not schedule.cron.startswith("@once"):
        kind = "calendar_interval" if split and split.every else "calendar"
    elif schedule.cron:
        # a time split exports each run's data interval: Airflow 3's cron default gives runs none
        kind = "cron_interval" if split and split.every else "cron"
    return SchedulePlan(
        kind=kind,
        cron=schedule.cron,
        timezone=schedule.timezone,
        after=tuple(schedule.after),
        start=schedule.start,
        catchup=schedule.catchup,
        max_active_runs=schedule.max_active_runs,
        grain=grain,
        waits_for=tuple((u.name, u.grain) for u in upstreams if u.grain) if grain else (),
        reads_latest=tuple(u.name for u in upstreams if not u.grain) if grain else (),
        calendar=spec.calendar,
    )


def plan_for(spec: DatasetSpec, load) -> DagPlan:
    """The plan of one data set (see the module). ``load(name)`` gives the spec of a data set it runs
    ``<after>``, or None if there is none (:func:`specs_beside` reads them from the spec's folder; a caller
    that has the folder's specs passes their ``dict.get``): the plan reads no file itself."""
    from flux_provider.rules import max_retries

    loading = _split_tasks(spec) if spec.source.is_split else _load_tasks(spec)
    tasks = (*loading, *_hive_tasks(spec, upstream=loading[-1].task_id))
    weight = priorities.weights({t.task_id: t.upstream for t in tasks}, spec)
    schedule = schedule_plan(spec, load)
    return DagPlan(
        dag_id=spec.dag_id,
        dataset=spec.name,
        owner=spec.owner,
        description=(spec.description.splitlines() or [f"flux data set {spec.name}"])[0][:200],
        schedule=schedule,
        asset=asset_plan(spec),
        pool=spec.throttle.pool,
        retries=max_retries(spec.rules),
        tasks=tuple(replace(t, priority_weight=weight[t.task_id]) for t in tasks),
        spec_file=spec.path.name if spec.path is not None else f"{spec.name}.xml",
        doc=doc_md(spec, schedule),
        rules=tuple(spec.rules),
        emails=tuple(spec.emails),
        webhooks=tuple(spec.webhooks),
        deadline=spec.deadline,
    )


# ------------------------------------------------------------------ the tasks
def _task(spec: DatasetSpec, task_id: str, kind: str, **fields) -> TaskPlan:
    return TaskPlan(task_id=task_id, kind=kind, pool=spec.throttle.pool, **fields)


def _source(spec: DatasetSpec) -> str:
    src = spec.source
    what = f"{src.schema}.{src.table}" if src.table else "its query"
    return f"mssql {src.connection}: {what}"


def _source_args(spec: DatasetSpec) -> dict[str, Any]:
    export = spec.export
    return dict(
        mssql_conn_id=spec.source.connection,
        engine=export.engine,
        batch_size=export.batch_size,
        execution_timeout=timedelta(minutes=export.timeout_minutes) if export.timeout_minutes else None,
        queue=export.queue,  # with mode="file" the export and its upload must share a host
    )


def export_args(spec: DatasetSpec) -> ExportArgs:
    src = spec.source
    return ExportArgs(
        schema=src.schema, table=src.table, sql=src.query, count_sql=src.count_query, **_source_args(spec)
    )


def _run_prefix(spec: DatasetSpec) -> str:
    """Where a run lands, as the plan prints it (the generation is chosen when the run uploads)."""
    return f"{spec.s3_location}/{RUNS}<run>/"


def _s3(spec: DatasetSpec) -> dict[str, Any]:
    return {"s3_location": spec.s3_location, "aws_conn_id": spec.s3_connection}


def _load_tasks(spec: DatasetSpec) -> tuple[TaskPlan, ...]:
    """export -> upload (file mode), or export_upload (streaming): the run published in S3."""
    run = _run_prefix(spec)
    if spec.export.mode == "streaming":
        args = ExportUploadArgs(**vars(export_args(spec)), **_s3(spec), upload_options=spec.chunking)
        return (_task(spec, EXPORT_UPLOAD, "export_upload", reads=(_source(spec),), writes=(run,), args=args),)
    upload = UploadArgs(**_s3(spec), export_task_id=EXPORT, chunking=spec.chunking, queue=spec.export.queue)
    return (
        _task(spec, EXPORT, "export", reads=(_source(spec),), writes=("a staging file",), args=export_args(spec)),
        _task(spec, UPLOAD, "upload", upstream=(EXPORT,), reads=("the export file",), writes=(run,), args=upload),
    )


def _split_tasks(spec: DatasetSpec) -> tuple[TaskPlan, ...]:
    """plan -> one mapped export_upload per part (all in the data set's pool) -> publish."""
    src, split = spec.source, spec.source.split
    plan = SplitPlanArgs(
        schema=src.schema,
        table=src.table,
        sql=src.query,
        queries=src.queries or None,
        column=split.column if split else None,
        parts=split.parts if split else None,
        every=split.every if split else None,
        reconcile=bool(src.count_query),
        mssql_conn_id=src.connection,
        **_s3(spec),
    )
    part = PartArgs(**_s3(spec), upload_options=spec.chunking, **_source_args(spec))
    # named queries may overlap: their total is checked against the count query; a range or window
    # split cannot overlap, and each of its parts is checked against its own count
    count = src.count_query if src.queries else None
    publish = PublishArgs(plan_task_id=PLAN, count_sql=count, mssql_conn_id=src.connection, **_s3(spec))
    run = _run_prefix(spec)
    return (
        _task(spec, PLAN, "plan", reads=(_source(spec),), args=plan),
        _task(
            spec,
            EXPORT_UPLOAD,
            "export_upload_part",
            upstream=(PLAN,),
            mapped_over=PLAN,
            reads=(_source(spec),),
            writes=(f"{run}_parts/<part>.json",),
            args=part,
        ),
        _task(
            spec,
            PUBLISH,
            "publish",
            upstream=(EXPORT_UPLOAD,),
            writes=(run, asset_plan(spec).extra["published"]),
            args=publish,
        ),
    )


def transform_args(spec: DatasetSpec, upstream: str, landing: Landing | None) -> TransformArgs:
    hive = spec.hive
    return TransformArgs(
        upload_task_id=upstream,
        database=hive.database,
        staging_table=hive.staging_table,
        target_table=hive.target_table,
        sql=hive.transform_sql,
        partition={p.name: p.value for p in hive.partitions if p.value is not None},
        dynamic_partitions=tuple(p.name for p in hive.partitions if p.value is None),
        target_columns=hive.columns or None,
        partition_types={p.name: p.type for p in hive.partitions} if hive.columns else None,
        target_format=hive.format,
        expect_rows=hive.expect_rows,
        min_rows=hive.min_rows,
        hiveserver2_conn_id=hive.connection,
        aws_conn_id=spec.s3_connection,
        timestamp_precision=hive.timestamp_precision,
        create_database=hive.create_database,
        landing=landing,
    )


def refresh_args(spec: DatasetSpec, landing: Landing) -> RefreshArgs:
    hive, refresh = spec.hive, spec.refresh
    return RefreshArgs(
        database=hive.database,
        table=hive.target_table,
        transform_task_id=TRANSFORM,
        repair=refresh.repair,
        latest_view=refresh.latest_view,
        retention_days=refresh.retention_days,
        retention_column=refresh.retention_column,
        purge=refresh.purge,
        analyze=refresh.analyze,
        hiveserver2_conn_id=hive.connection,
        metastore_conn_id=hive.metastore,
        aws_conn_id=spec.s3_connection,
        landing=landing,
    )


def _hive_tasks(spec: DatasetSpec, *, upstream: str) -> tuple[TaskPlan, ...]:
    """transform (-> refresh, for a partitioned target): the last task updates the Asset and prunes the landing."""
    hive = spec.hive
    landing = Landing(
        s3_location=spec.s3_location, raw_table=f"`{hive.database}`.`{hive.staging_table}_raw`", rule=spec.landing
    )
    target, outlets = f"hive {hive.database}.{hive.target_table}", (asset_name(spec.name),)
    reads = (f"hive {hive.database}.{hive.staging_table} over the published run",)
    transform = dict(upstream=(upstream,), reads=reads, writes=(target,))
    if not hive.partitions:
        args = transform_args(spec, upstream, landing)
        return (_task(spec, TRANSFORM, "transform", outlets=outlets, args=args, **transform),)
    return (
        _task(spec, TRANSFORM, "transform", args=transform_args(spec, upstream, None), **transform),
        _task(
            spec,
            REFRESH,
            "refresh",
            upstream=(TRANSFORM,),
            writes=(f"{target} partitions",),
            outlets=outlets,
            args=refresh_args(spec, landing),
        ),
    )


__all__ = ["AssetPlan", "DagPlan", "SchedulePlan", "TaskPlan", "plan_for", "specs_beside"]
