"""PublishRunOperator: a split run is published once, after every part uploaded: one manifest, then the pointer.

Example (after a :class:`~flux_provider.operators.split_plan.SplitPlanOperator` and its mapped parts)::

    from flux_provider.operators.publish_run import PublishRunOperator

    publish = PublishRunOperator(
        task_id="publish",
        dataset="viewing_sessions",
        plan_task_id="plan",
        s3_location="s3://flux/media/viewing_sessions",
        count_sql="SELECT COUNT(*) FROM dbo.viewing_sessions",   # optional: the parts' total must match
    )

It reads each planned part's manifest from S3 (``_parts/<part>.json``: what the
part uploaded, not what an XCom says), checks that all parts agree on columns
and encoding and, with ``count_sql``, that their rows add up to the count, then
writes the run's manifest (every part's chunks with rows, bytes and CRC32) and
only then the data set's pointer. If any part failed, this task does not run
(Airflow's ``all_success``) and nothing is published; a rerun keeps the parts
already uploaded. XCom ``return_value``: the published run, as the upload
operators return it, with the parts' rows under ``parts``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from flux_provider.errors import ErrorClass
from flux_provider.handoffs import ExportResult, UploadResult
from flux_provider.hooks.run_store import RunStore
from flux_provider.hooks.s3_client import s3_client
from flux_provider.hooks.split_publish import publish_parts
from flux_provider.operators.base import FluxOperator, try_number
from flux_provider.queries import QueryRefused, check_read_only
from flux_provider.run_day import VARIABLE as DAY_VARIABLE
from flux_provider.run_records import Manifest, PartManifest
from flux_provider.s3_layout import DatasetLayout
from flux_provider.splits import Part


class PublishRunOperator(FluxOperator):
    """Publish the run that a split plan's parts uploaded.

    :param dataset: the data set's name.
    :param s3_location: the data set's S3 location.
    :param aws_conn_id: the Airflow AWS connection of ``s3_location``.
    :param plan_task_id: the plan task whose XCom lists the parts.
    :param count_sql: optional count the parts' total rows must equal (templated).
    :param mssql_conn_id: the source connection ``count_sql`` runs on.
    """

    template_fields: Sequence[str] = ("s3_location", "count_sql")
    ui_color = "#c4ecd9"
    step = "publish"

    def __init__(
        self,
        *,
        dataset: str,
        s3_location: str,
        plan_task_id: str = "plan",
        count_sql: str | None = None,
        mssql_conn_id: str = "mssql_default",
        aws_conn_id: str | None = "aws_default",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dataset, self.s3_location, self.plan_task_id = dataset, s3_location, plan_task_id
        self.count_sql, self.mssql_conn_id, self.aws_conn_id = count_sql, mssql_conn_id, aws_conn_id

    def lineage(self, complete: bool) -> tuple[list, list]:
        from flux_provider.operators import lineage

        upload = UploadResult.from_json(self.flux_result) if complete else None
        output = lineage.export_output(
            self.s3_location,
            rows=upload.rows if upload else None,
            size=upload.bytes if upload else None,
            columns=None,
            source=None,
        )
        return [], [output]

    def work(self, context) -> dict:
        started = time.monotonic()
        plan = [Part.from_json(p) for p in context["ti"].xcom_pull(task_ids=self.plan_task_id) or []]
        if not plan:
            raise self._fail(f"the plan task {self.plan_task_id!r} left no parts: run it first")
        try:
            layout = DatasetLayout.from_url(self.s3_location)
        except ValueError as exc:
            raise self._fail(str(exc)) from None
        run = layout.generation_at(plan[0].prefix)
        manifest = publish_parts(
            RunStore(s3_client(self.aws_conn_id), layout, dataset=self.dataset),
            run,
            [p.name for p in plan],
            before_publish=self._check_total,
            day=context.get(DAY_VARIABLE),
            attempt=try_number(context),
        )
        self.log.info(
            "data set %s: published %d rows of %d parts (%s) in %d chunks -> %s",
            self.dataset,
            manifest.rows,
            len(plan),
            ", ".join(f"{p.part} {p.rows}" for p in manifest.parts),
            len(manifest.chunks),
            run.url,
        )
        return self._result(run.manifest_key, manifest, time.monotonic() - started).to_json()

    def _result(self, manifest_key: str, manifest: Manifest, seconds: float) -> UploadResult:
        sources = [p.source for p in manifest.parts if p.source is not None]
        tools = sorted({s.tool for s in sources if s.tool})
        engines = sorted({s.engine for s in sources if s.engine})
        return UploadResult(
            dataset=self.dataset,
            location=self.s3_location,
            bucket=manifest.bucket,
            prefix=manifest.prefix,
            manifest=manifest_key,
            rows=manifest.rows,
            chunks=len(manifest.chunks),
            bytes=manifest.bytes,
            raw_bytes=manifest.raw_bytes,
            compression=manifest.compression,
            encoding=manifest.encoding,
            columns=manifest.columns,
            seconds=round(seconds, 3),
            export=ExportResult(
                dataset=self.dataset,
                rows=sum(s.rows or 0 for s in sources),
                bytes=manifest.raw_bytes,
                engine=",".join(engines) or None,
                tool=",".join(tools) or None,
                columns=manifest.columns,
            ),
            parts=list(manifest.parts),
        )

    def _check_total(self, parts: list[PartManifest]) -> None:
        """The parts' rows must add up to ``count_sql`` (overlapping or missing queries do not)."""
        if not self.count_sql:
            return
        from airflow.providers.microsoft.mssql.hooks.mssql import MsSqlHook

        try:
            check_read_only(self.count_sql, dialect="tsql")
        except QueryRefused as exc:
            raise self._fail(f"count_sql: {exc}") from None
        expected = int(MsSqlHook(mssql_conn_id=self.mssql_conn_id).get_first(self.count_sql)[0])
        total = sum(p.rows for p in parts)
        if total != expected:
            each = ", ".join(f"{p.part} {p.rows}" for p in parts)
            raise self._fail(
                f"the parts hold {total} rows ({each}) but the count query returned {expected}: the queries "
                "overlap or miss rows, or the source changed during the export. Nothing was published; make "
                "each row belong to exactly one query and clear the run",
                ErrorClass.DATA,
            )


__all__ = ["PublishRunOperator"]
