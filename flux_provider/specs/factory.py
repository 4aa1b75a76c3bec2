"""Data-set specs -> Airflow DAGs: one DAG per data set, export -> upload -> transform -> refresh.

Two ways to load a folder of specs (``<folder>/specs/*.xml``) in a DAG bundle:

* **one small DAG file per data set** (what the sample bundle does)::

      # dags/titles.py: the data set of specs/titles.xml
      from airflow.sdk import DAG
      from flux_provider.specs.factory import dag_for

      dag: DAG = dag_for(__file__)

  Airflow's default ``dag_discovery_safe_mode`` parses only files whose text
  contains both "airflow" and "dag": the import and the annotation make sure of
  it whatever the comments say (``specs check`` reports files it would skip).

  A broken spec is then an Airflow import error of that file only, with the
  spec's file, line and fix in the message; every other data set loads.
* **one DAG file for the whole folder**: ``globals().update(build_dags(folder))``.
  Broken specs are skipped and logged (``strict=True`` raises instead, which
  takes the whole file down).

Every task runs in the data set's pool (create pools before the DAGs run:
``python -m flux_provider.specs pools sync <folder>``; the local stack does it
at start-up). The refresh (or transform) task updates the Asset
``flux.<data set>`` so other data sets can run ``<after>`` it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset
from airflow.timetables.interval import CronDataIntervalTimetable

from flux_provider.hooks.landing import Landing
from flux_provider.operators.base import lost_try_retry_delay
from flux_provider.operators.bcp_export import BcpExportOperator
from flux_provider.operators.bcp_to_s3 import BcpToS3Operator
from flux_provider.operators.hive_transform import HiveTransformOperator
from flux_provider.operators.partition_refresh import PartitionRefreshOperator
from flux_provider.operators.publish_run import PublishRunOperator
from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator
from flux_provider.operators.split_plan import SplitPlanOperator
from flux_provider.recovery import Recovery, RecoveryPolicy
from flux_provider.run_report import EXPORT, EXPORT_UPLOAD, PLAN, PUBLISH, REFRESH, TRANSFORM, UPLOAD
from flux_provider.specs import after_graph
from flux_provider.specs.model import DatasetSpec
from flux_provider.specs.parser import SpecError, load_spec, parse_xml
from flux_provider.specs.timetable import CalendarCronDataInterval, CalendarCronTrigger

log = logging.getLogger(__name__)


def spec_files(folder: Path | str) -> list[Path]:
    folder = Path(folder)
    specs = folder / "specs" if (folder / "specs").is_dir() else folder
    return sorted(specs.glob("*.xml"))


def load_specs(folder: Path | str, *, check_queries: bool = True) -> tuple[list[DatasetSpec], list[SpecError]]:
    """Every spec of ``folder`` that loads, and the errors of those that do not (names are unique: a
    spec's file is named after its data set)."""
    specs, errors = [], []
    for path in spec_files(folder):
        try:
            specs.append(load_spec(path, check_queries=check_queries))
        except SpecError as exc:
            errors.append(exc)
    return specs, errors


def asset_for(spec: DatasetSpec) -> Asset:
    """The data set's Asset ``flux.<name>``: its URI is its name, and where it is published is in ``extra``.

    An ``s3://`` URI would make Airflow load every provider's URI normaliser (boto3 and the S3 hook among
    them) when the DAG file is parsed: about half a CPU second per file, every parse."""
    return Asset(
        name=f"flux.{spec.name}",
        group="flux",
        extra={
            "published": f"s3://{spec.s3_location.split('://', 1)[1]}/_published.json",
            "hive_table": f"{spec.hive.database}.{spec.hive.target_table}",
        },
    )


def _schedule(spec: DatasetSpec, known: set[str] | None):
    if spec.schedule.after:
        missing = [a for a in spec.schedule.after if known is not None and a not in known]
        if missing:
            raise SpecError(
                spec.path,
                f"<after> names data sets that have no spec here: {missing}",
                element="schedule",
                dataset=spec.name,
                fix=f"one of {sorted(known or [])}, or a cron/preset schedule",
            )
        return [Asset.ref(name=f"flux.{name}") for name in spec.schedule.after]
    split, cron, zone = spec.source.split, spec.schedule.cron, spec.schedule.timezone
    if cron and spec.calendar is not None and not cron.startswith("@once"):
        if split and split.every:
            return CalendarCronDataInterval(cron, zone, calendar=spec.calendar)
        return CalendarCronTrigger(cron, timezone=zone, calendar=spec.calendar)
    if split and split.every and cron:
        # a time split exports each run's data interval: Airflow 3's cron default gives runs none
        return CronDataIntervalTimetable(cron, timezone=zone)
    return cron


def doc_md(spec: DatasetSpec) -> str:
    src = spec.source
    source = f"`{src.schema}.{src.table}`" if src.table else "a query"
    parts = (
        ", ".join(f"{p.name} {p.type}" + (f" = `{p.value}`" if p.value else " (dynamic)") for p in spec.hive.partitions)
        or "none"
    )
    schedule = (
        f"after {', '.join(spec.schedule.after)}"
        if spec.schedule.after
        else f"`{spec.schedule.cron}`"
        if spec.schedule.cron
        else "manual"
    )
    rules = "\n".join(
        f"{i}. match {_match_text(r.match)} -> {', '.join(a.kind for a in r.actions)}"
        for i, r in enumerate(spec.rules, 1)
    )
    rules += ("\n\n" if rules else "") + (
        "then the defaults: terminal error classes fail at once, others retry 5 "
        "times a minute apart; then fail and alert"
    )
    return f"""### Data set `{spec.name}`

{spec.description}

| | |
| --- | --- |
| owner | {spec.owner} |
| alerts | {", ".join(spec.emails + spec.webhooks) or "none"} |
| source | {source} on connection `{src.connection}` |
| export | {spec.export.engine} engine, {spec.export.mode} mode |
| S3 | `{spec.s3_location}` ({spec.chunking.compression or "plain"} chunks) |
| Hive | `{spec.hive.database}.{spec.hive.staging_table}` -> `{spec.hive.database}.{spec.hive.target_table}` |
| partitions | {parts} |
| split | {_split_text(spec)} |
| schedule | {schedule} (at most {spec.schedule.max_active_runs} run(s) at once) |
| pool | `{spec.throttle.pool}`: {spec.throttle.initial} slots (adaptive {spec.throttle.min}-{spec.throttle.max}) |
| spec | `{spec.path.name}` |

**Recovery rules**

{rules}

**Transform**

```sql
{spec.hive.transform_sql}
```
"""


def _split_text(spec: DatasetSpec) -> str:
    split, queries = spec.source.split, spec.source.queries
    if queries:
        return f"{len(queries)} named queries: {', '.join(name for name, _ in queries)}"
    if split is None:
        return "none: one query"
    if split.every:
        return f"one part per {split.every} of the data interval, by `{split.column}`"
    return f"{split.parts} key ranges of `{split.column}` (and its NULLs)"


def _match_text(match) -> str:
    fields = {
        "class": match.error_class,
        "number": match.number,
        "exit code": match.exit_code,
        "message": match.message,
        "step": match.step,
    }
    return ", ".join(f"{k} {v!r}" for k, v in fields.items() if v is not None) or "any error"


def _deadline(spec: DatasetSpec):
    """The spec's ``DeadlineAlert``, or None. Its module registers a custom deadline reference, which loads
    Airflow's deadline models (a quarter of a CPU second): only DAG files of specs with a deadline pay that."""
    if spec.deadline is None:
        return None
    from flux_provider.deadlines import alert_for

    return alert_for(spec)


def build_dag(spec: DatasetSpec, *, known: set[str] | None = None):
    """The DAG of one data set."""
    src, hive, chunking = spec.source, spec.hive, spec.chunking
    timeout = timedelta(minutes=spec.export.timeout_minutes) if spec.export.timeout_minutes else None
    # every task: the data set's pool, and its recovery rules (which also set retries and their delays)
    recovery = Recovery(rules=spec.rules, emails=spec.emails, webhooks=spec.webhooks)
    common = dict(dataset=spec.name, pool=spec.throttle.pool, recovery=recovery)
    export_args = dict(
        schema=src.schema,
        table=src.table,
        sql=src.query,
        count_sql=src.count_query,
        mssql_conn_id=src.connection,
        engine=spec.export.engine,
        batch_size=spec.export.batch_size,
        execution_timeout=timeout,
    )
    # the export-side tasks' queue: with mode="file" the export and its upload must share a host
    placement = {"queue": spec.export.queue} if spec.export.queue else {}
    upload_args = dict(
        chunk_mb=chunking.size_mb,
        chunk_rows=chunking.rows,
        compression=chunking.compression,
        field_delimiter=chunking.field_delimiter,
        collection_delimiter=chunking.collection_delimiter,
        map_key_delimiter=chunking.map_key_delimiter,
        null_format=chunking.null_format,
    )
    with DAG(
        dag_id=spec.dag_id,
        description=(spec.description.splitlines() or [f"flux data set {spec.name}"])[0][:200],
        schedule=_schedule(spec, known),
        start_date=pendulum.parse(spec.schedule.start, tz=spec.schedule.timezone),
        catchup=spec.schedule.catchup,
        max_active_runs=spec.schedule.max_active_runs,  # each run transforms through a staging view of its own
        doc_md=doc_md(spec),
        tags=["flux", f"owner:{spec.owner}"],
        # retries, delays and alerts come from the recovery rules (flux_provider.recovery)
        default_args={"owner": spec.owner},
        params={"flux_spec": str(spec.path.name)},
        deadline=_deadline(spec),
    ) as dag:
        if src.is_split:
            upload = _split_export(spec, common, export_args, upload_args, placement)
        elif spec.export.mode == "streaming":
            upload = BcpToS3Operator(
                task_id=EXPORT_UPLOAD,
                s3_location=spec.s3_location,
                aws_conn_id=spec.s3_connection,
                upload_options=upload_args,
                **common,
                **export_args,
                **placement,
            )
            first = upload
        else:
            first = BcpExportOperator(task_id=EXPORT, **common, **export_args, **placement)
            upload = S3ChunkUploadOperator(
                task_id=UPLOAD,
                s3_location=spec.s3_location,
                aws_conn_id=spec.s3_connection,
                export_task_id=EXPORT,
                **placement,
                **common,
                **upload_args,
            )
            first >> upload
        landing = Landing(
            s3_location=spec.s3_location,
            raw_table=f"`{hive.database}`.`{hive.staging_table}_raw`",
            rule=spec.landing,
        )
        static = {p.name: p.value for p in hive.partitions if p.value is not None}
        transform = HiveTransformOperator(
            task_id=TRANSFORM,
            upload_task_id=upload.task_id,
            database=hive.database,
            staging_table=hive.staging_table,
            target_table=hive.target_table,
            sql=hive.transform_sql,
            partition=static,
            dynamic_partitions=[p.name for p in hive.partitions if p.value is None],
            target_columns=hive.columns or None,
            partition_types={p.name: p.type for p in hive.partitions} if hive.columns else None,
            target_format=hive.format,
            expect_rows=hive.expect_rows,
            min_rows=hive.min_rows,
            hiveserver2_conn_id=hive.connection,
            aws_conn_id=spec.s3_connection,
            timestamp_precision=hive.timestamp_precision,
            create_database=hive.create_database,
            outlets=[] if hive.partitions else [asset_for(spec)],
            landing=None if hive.partitions else landing,  # the last task prunes the landed runs
            **common,
        )
        upload >> transform
        if hive.partitions:
            refresh = spec.refresh
            transform >> PartitionRefreshOperator(
                task_id=REFRESH,
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
                outlets=[asset_for(spec)],
                landing=landing,
                **common,
            )
    return dag


def _split_export(spec: DatasetSpec, common: dict, export_args: dict, upload_args: dict, placement: dict):
    """plan -> one mapped export_upload per part (all in the data set's pool) -> publish; returns publish."""
    src, split = spec.source, spec.source.split
    plan = SplitPlanOperator(
        task_id=PLAN,
        schema=src.schema,
        table=src.table,
        sql=src.query,
        queries=src.queries or None,
        column=split.column if split else None,
        parts=split.parts if split else None,
        every=split.every if split else None,
        reconcile=bool(src.count_query),
        s3_location=spec.s3_location,
        aws_conn_id=spec.s3_connection,
        mssql_conn_id=src.connection,
        **common,
    )
    recovery = common["recovery"]
    part_args = {k: v for k, v in export_args.items() if k not in ("schema", "table", "sql", "count_sql")}
    parts = BcpToS3Operator.partial(
        task_id=EXPORT_UPLOAD,
        s3_location=spec.s3_location,
        aws_conn_id=spec.s3_connection,
        upload_options=upload_args,
        map_index_template="{{ task.part['name'] }}",
        # a mapped task's retries are read by the scheduler before the operator exists: give them here
        retries=recovery.max_retries,
        retry_delay=lost_try_retry_delay(),
        retry_policy=RecoveryPolicy(recovery),
        **common,
        **part_args,
        **placement,
    ).expand(part=plan.output)
    publish = PublishRunOperator(
        task_id=PUBLISH,
        plan_task_id=PLAN,
        s3_location=spec.s3_location,
        aws_conn_id=spec.s3_connection,
        # named queries may overlap: their total is checked against the count query; a range or window
        # split cannot overlap, and each of its parts is checked against its own count
        count_sql=src.count_query if src.queries else None,
        mssql_conn_id=src.connection,
        **common,
    )
    plan >> parts >> publish
    return publish


def build_dags(folder: Path | str, *, strict: bool = False) -> dict[str, object]:
    """``{dag_id: DAG}`` for every spec of ``folder``; broken specs are logged and skipped (or raised)."""
    specs, errors = load_specs(folder, check_queries=False)  # checked by `specs check` and before each export
    for error in errors:
        if strict:
            raise error
        log.error("skipping a data set: %s", error)
    known = {p.stem for p in spec_files(folder)}  # a broken spec is still a data set others may wait for
    by_name = {s.name: s for s in specs}
    for cycle in after_graph.cycles({s.name: s.schedule.after for s in specs}):
        error = after_graph.cycle_error(cycle, lambda n: by_name[n].path)
        if strict:
            raise error
        log.error("skipping data sets %s: %s", sorted(set(cycle)), error)
        specs = [s for s in specs if s.name not in cycle]
    dags = {}
    for spec in specs:
        try:
            dags[spec.dag_id] = build_dag(spec, known=known)
        except SpecError as exc:
            if strict:
                raise
            log.error("skipping a data set: %s", exc)
    return dags


def dag_for(dag_file: str | Path, spec_name: str | None = None):
    """The DAG of ``specs/<name>.xml`` next to ``dag_file`` (name: the DAG file's own name by default).

    Raises :class:`SpecError` for a broken spec: Airflow shows it as that DAG file's import error.
    """
    dag_file = Path(dag_file)
    folder = dag_file.parent / "specs"
    path = folder / f"{spec_name or dag_file.stem}.xml"
    if not path.is_file():
        raise SpecError(path, "no such spec", fix=f"create {path.name} or pass spec_name= to dag_for")
    spec = load_spec(path, check_queries=False)  # checked by `specs check` and before each export
    # the data sets it waits for exist: one look per name (the folder is listed only to name the choices)
    after = spec.schedule.after
    found = all((folder / f"{name}.xml").is_file() for name in after)
    known = {spec.name, *after} if found else {p.stem for p in spec_files(folder)}
    cycle = after_graph.cycle_through(spec.name, _after_reader(folder))
    if cycle:
        raise after_graph.cycle_error(cycle, lambda n: folder / f"{n}.xml")
    return build_dag(spec, known=known)


def _after_reader(folder: Path):
    """``name -> the data sets it waits for``, reading only the ``<after>`` of the specs asked about."""

    def after_of(name: str) -> tuple[str, ...]:
        try:
            root = parse_xml(folder / f"{name}.xml").getroot()
        except (SpecError, OSError):
            return ()  # a missing or broken spec reports itself
        return tuple(e.text.strip() for e in root.iter("after") if e.text and e.text.strip())

    return after_of
