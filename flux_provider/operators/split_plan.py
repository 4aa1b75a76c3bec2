"""SplitPlanOperator: the parts of a split export, each one query, for mapped export tasks to run.

Example (what the DAG factory builds from ``<split column="session_id" parts="16"/>``)::

    from flux_provider.operators.bcp_to_s3 import BcpToS3Operator
    from flux_provider.operators.publish_run import PublishRunOperator
    from flux_provider.operators.split_plan import SplitPlanOperator

    plan = SplitPlanOperator(
        task_id="plan",
        dataset="viewing_sessions",
        schema="dbo", table="viewing_sessions",    # or sql="SELECT ...", or queries=[("eu", "SELECT ..."), ...]
        column="session_id", parts=16,             # or every="day" (one part per day of the data interval)
        reconcile=True,                            # each part checked against its own COUNT(*)
        s3_location="s3://flux/media/viewing_sessions",
    )
    parts = BcpToS3Operator.partial(task_id="export_upload", dataset="viewing_sessions", pool="flux_viewing_sessions",
                                    s3_location="s3://flux/media/viewing_sessions",
                                    map_index_template="{{ task.part['name'] }}").expand(part=plan.output)
    plan >> parts >> PublishRunOperator(task_id="publish", dataset="viewing_sessions",
                                        s3_location="s3://flux/media/viewing_sessions")

Kinds of split (:mod:`flux_provider.splits`):

* **key range** (``column``, ``parts``): an integer or date/time column; its MIN and
  MAX are read from the source when the plan runs, the range is cut into
  ``parts`` (fewer if there are fewer keys), the first part open below and the last
  open above, and a nullable column's NULLs are a part of their own: every row
  is exported exactly once.
* **time windows** (``column``, ``every="day"|"hour"``): one part per day or hour of
  the run's data interval, in the DAG's time zone. A run without a data interval
  (triggered without a logical date, or by an Asset) fails at once: it has no
  window to export.
* **named queries** (``queries``): one part per query, as written.

The plan also fixes the run's S3 prefix (the next unpublished generation), so
every part, and every retry of a part, uploads into the same run. XCom
``return_value``: the list of parts (``name``, ``sql``, ``count_sql``, ``predicate``, ``prefix``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from flux_provider import splits
from flux_provider.errors import FluxError
from flux_provider.hooks.dbapi_export import describe
from flux_provider.hooks.run_store import RunStore
from flux_provider.hooks.s3_client import s3_client
from flux_provider.hooks.s3_errors import classify_s3
from flux_provider.identifiers import sqlserver_table
from flux_provider.operators.base import FluxOperator
from flux_provider.s3_layout import DatasetLayout, run_key_for


class SplitPlanOperator(FluxOperator):
    """Plan the parts of one run's split export (see the module docstring).

    :param dataset: the data set's name.
    :param schema: the source table's schema (validated identifier).
    :param table: the source table (validated identifier); or ``sql``; or ``queries``.
    :param sql: the source query a key-range or time split cuts (templated).
    :param queries: ``[(name, sql), ...]``: explicit parts (templated).
    :param column: the split column (key range or time windows).
    :param parts: number of key ranges (1..:data:`~flux_provider.splits.MAX_PARTS`).
    :param every: ``day`` or ``hour``: one part per window of the data interval.
    :param reconcile: give each part a COUNT(*) query its export is checked against.
    :param s3_location: where the run is uploaded (the plan fixes its prefix).
    :param aws_conn_id: the Airflow AWS connection of ``s3_location``.
    :param mssql_conn_id: the source's Airflow connection.
    """

    template_fields: Sequence[str] = ("sql", "queries", "s3_location")
    ui_color = "#e8defc"
    step = "plan"

    def __init__(
        self,
        *,
        dataset: str,
        s3_location: str,
        schema: str | None = None,
        table: str | None = None,
        sql: str | None = None,
        queries: Sequence[Sequence[str]] | None = None,
        column: str | None = None,
        parts: int | None = None,
        every: str | None = None,
        reconcile: bool = False,
        mssql_conn_id: str = "mssql_default",
        aws_conn_id: str | None = "aws_default",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dataset, self.s3_location, self.schema, self.table, self.sql = dataset, s3_location, schema, table, sql
        self.queries = [list(q) for q in queries] if queries else None
        self.column, self.parts, self.every, self.reconcile = column, parts, every, reconcile
        self.mssql_conn_id, self.aws_conn_id = mssql_conn_id, aws_conn_id
        if self.queries is None:
            if bool(table) == bool(sql):
                raise self._fail("give exactly one of table= (with schema=), sql= or queries=")
            if not column or (parts is None) == (every is None):
                raise self._fail("a split needs column= and exactly one of parts= or every=")
            if every is not None and every not in splits.EVERY:
                raise self._fail(f"every={every!r} is not one of {', '.join(splits.EVERY)}")
            if parts is not None and not 1 <= parts <= splits.MAX_PARTS:
                raise self._fail(f"parts={parts} is not between 1 and {splits.MAX_PARTS}")

    def work(self, context) -> list[dict]:
        from airflow.providers.microsoft.mssql.hooks.mssql import MsSqlHook

        if self.queries is not None:
            planned = splits.query_parts([(n, q) for n, q in self.queries], count=self.reconcile)
            how = "named queries"
        else:
            hook = MsSqlHook(mssql_conn_id=self.mssql_conn_id)
            source = splits.source_of(
                table=sqlserver_table(self.schema, self.table, dataset=self.dataset) if self.table else None,
                query=self.sql,
            )
            column = splits.column(self.column, dataset=self.dataset)
            described = self._describe(hook, column, source)
            planned, how = (
                self._windows(context, source, column, described.type_name)
                if self.every
                else self._ranges(hook, source, column, described)
            )
        prefix = self._prefix(context["ti"].run_id)
        for part in planned:
            self.log.info("data set %s: part %s: %s", self.dataset, part.name, part.predicate or part.sql)
        self.log.info("data set %s: %d parts (%s) -> %s", self.dataset, len(planned), how, prefix)
        return [dataclasses.replace(part, prefix=prefix).to_json() for part in planned]

    def _describe(self, hook, column: str, source: str):
        try:
            return describe(hook, f"SELECT {column} FROM {source}", dataset=self.dataset)[0]
        except FluxError as exc:
            if exc.server_number == 207 or "invalid column" in str(exc).lower() or "no such column" in str(exc):
                raise self._fail(
                    f"the split column {self.column!r} is not a column of {self.table or 'the source query'}: "
                    f"{exc}. Fix the <split column=...> of the spec"
                ) from None
            raise

    def _ranges(self, hook, source: str, column: str, described) -> tuple[list[splits.Part], str]:
        type_name = described.type_name.lower()
        if type_name not in splits.INTEGER_TYPES + splits.TIME_TYPES:
            raise self._fail(
                f"the split column {self.column!r} is {described.system_type_name}: a key-range split needs an "
                f"integer ({', '.join(splits.INTEGER_TYPES)}) or date/time ({', '.join(splits.TIME_TYPES)}) "
                "column. Choose another column, or list the parts as named <query> elements"
            )
        low, high = hook.get_first(f"SELECT MIN({column}), MAX({column}) FROM {source}")
        if low is None:
            bounds = []
        elif type_name in splits.INTEGER_TYPES:
            bounds = splits.integer_bounds(int(low), int(high), self.parts)
        else:
            bounds = splits.time_bounds(_moment(low), _moment(high), self.parts, whole_days=type_name == "date")
        planned = splits.range_parts(
            source, column, bounds, type_name, nullable=described.nullable, count=self.reconcile
        )
        return planned, f"{self.column} from {low} to {high}"

    def _windows(self, context, source: str, column: str, type_name: str) -> tuple[list[splits.Part], str]:
        type_name = type_name.lower()
        if type_name not in splits.TIME_TYPES:
            raise self._fail(
                f"the split column {self.column!r} is {type_name}: a split every {self.every} needs a date/time "
                f"column ({', '.join(splits.TIME_TYPES)}). Choose another column or split by parts="
            )
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if start is None or end is None or not end > start:
            raise self._fail(
                f"a split every {self.every} exports the run's data interval, and this run has none "
                f"({start} to {end}): it was triggered without a logical date or by an Asset. Trigger it with "
                "a logical date (the scheduler's runs have one), or split by parts= instead"
            )
        dag = context.get("dag")
        zone = getattr(dag, "timezone", None) or dt.timezone.utc
        local = [moment.astimezone(zone).replace(tzinfo=None) for moment in (start, end)]
        spans = splits.windows(local[0], local[1], self.every)
        if len(spans) > splits.MAX_PARTS:
            raise self._fail(
                f"the data interval {local[0]} to {local[1]} has {len(spans)} {self.every}s, more than "
                f"{splits.MAX_PARTS} parts: split every day, or backfill it in shorter runs"
            )
        return splits.window_parts(source, column, spans, type_name, count=self.reconcile), (
            f"every {self.every} from {local[0]} to {local[1]}"
        )

    def _prefix(self, run_id: str) -> str:
        try:
            layout = DatasetLayout.from_url(self.s3_location)
        except ValueError as exc:
            raise self._fail(str(exc)) from None
        try:
            return RunStore(s3_client(self.aws_conn_id), layout).next_generation(run_key_for(run_id)).prefix
        except Exception as exc:  # classified: S3 down is transient
            raise self._fail(f"cannot read {layout.url}: {exc}", classify_s3(exc)) from exc


def _moment(value) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    return dt.datetime.fromisoformat(str(value))


__all__ = ["SplitPlanOperator"]
