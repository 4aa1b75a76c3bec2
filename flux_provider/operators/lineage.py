"""OpenLineage for the flux operators: what each step read and wrote, reported through Airflow's OpenLineage
provider (``get_openlineage_facets_on_start`` / ``_on_complete`` of :class:`~flux_provider.operators.base.
FluxOperator`). Without the provider installed (the ``openlineage`` extra) nothing is reported.

Names follow OpenLineage's naming conventions:

* SQL Server: namespace ``mssql://host:port`` (``MsSqlHook``'s OpenLineage database info), name
  ``database.schema.table``; a free query reports the tables it reads (parsed with sqlglot, T-SQL);
* S3: namespace ``s3://bucket``, name the data set's location (the prefix its runs are published under:
  one node per data set, whatever the run), with the Hive staging table that reads it as a symlink;
* Hive: namespace ``hive://host:port`` (the HiveServer2 connection), name ``database.table``; the tables a
  transform's SQL joins (a dimension's latest view, say) are inputs beside the staging data.

Outputs carry their row count (and bytes) as ``outputStatistics``, their columns as ``schema``; a copy that
keeps every column 1:1 (every export, a transform that selects columns unchanged) carries
``columnLineage``. Reporting lineage never fails a task: an error is logged and nothing is reported.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class Lineage:
    """What a flux operator reports to OpenLineage: a step says its (inputs, outputs) in :meth:`lineage`; the
    OpenLineage provider's hooks turn them into its facets. Lineage never fails a task."""

    flux_result = None  # what this try returned (its XCom): a step's counts once it succeeded

    def lineage(self, complete: bool) -> tuple[list, list] | None:
        """(inputs, outputs) of this step for OpenLineage; ``complete``: after a successful run (with counts)."""
        return None

    def get_openlineage_facets_on_start(self):
        return self._lineage(complete=False)

    def get_openlineage_facets_on_complete(self, task_instance):
        return self._lineage(complete=self.flux_result is not None)

    def _lineage(self, complete: bool):
        try:
            found = self.lineage(complete)
            return None if found is None else operator_lineage(*found)
        except Exception as exc:  # lineage never fails a task
            self.log.warning("data set %s %s: lineage not reported: %s", getattr(self, "dataset", None), self.step, exc)
            return None


def operator_lineage(inputs: list, outputs: list):
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=inputs, outputs=outputs)


def _dataset(namespace: str, name: str, facets: dict | None = None, output_facets: dict | None = None):
    from openlineage.client.event_v2 import Dataset, OutputDataset

    if output_facets:
        return OutputDataset(namespace=namespace, name=name, facets=facets or {}, outputFacets=output_facets)
    return Dataset(namespace=namespace, name=name, facets=facets or {})


def _schema(columns: list[tuple[str, str]] | None) -> dict:
    from openlineage.client.facet_v2 import schema_dataset

    if not columns:
        return {}
    fields = [schema_dataset.SchemaDatasetFacetFields(name=n, type=str(t)) for n, t in columns]
    return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields)}


def _statistics(rows: int | None, size: int | None = None) -> dict:
    from openlineage.client.facet_v2 import output_statistics_output_dataset as stats

    if rows is None:
        return {}
    return {"outputStatistics": stats.OutputStatisticsOutputDatasetFacet(rowCount=int(rows), size=size)}


def _identity(source, columns: list[str]) -> dict:
    """Each column copied unchanged from the same-named column of ``source``."""
    from openlineage.client.facet_v2 import column_lineage_dataset as cl

    if not columns:
        return {}
    fields = {
        c: cl.Fields(
            inputFields=[cl.InputField(namespace=source.namespace, name=source.name, field=c)],
            transformationDescription="copied unchanged",
            transformationType="IDENTITY",
        )
        for c in columns
    }
    return {"columnLineage": cl.ColumnLineageDatasetFacet(fields=fields)}


# ------------------------------------------------------------------ SQL Server
def mssql_namespace(conn_id: str) -> tuple[str, str]:
    """(``mssql://host:port``, database) of a SQL Server connection, as the MsSqlHook reports them."""
    from airflow.providers.microsoft.mssql.hooks.mssql import MsSqlHook

    hook = MsSqlHook(mssql_conn_id=conn_id)
    connection = hook.get_connection(conn_id)
    info = hook.get_openlineage_database_info(connection)
    return f"{info.scheme}://{info.authority}", info.database or "master"


def mssql_inputs(conn_id: str, *, schema: str | None, table: str | None, sql: str | None) -> list:
    """The source table, or the tables a query reads (two-part names get the connection's database)."""
    namespace, database = mssql_namespace(conn_id)
    if table:
        return [_dataset(namespace, f"{database}.{schema or 'dbo'}.{table}")]
    return [_dataset(namespace, name) for name in query_tables(sql or "", "tsql", database, schema or "dbo")]


def query_tables(sql: str, dialect: str, database: str, schema: str | None = None) -> list[str]:
    """Fully qualified names of the tables ``sql`` reads (CTE names excluded), sorted: ``database.table``, or
    ``database.schema.table`` when a default ``schema`` is given (SQL Server)."""
    import sqlglot
    from sqlglot import exp

    names = set()
    for statement in sqlglot.parse(sql, read=dialect):
        if statement is None:
            continue
        ctes = {c.alias_or_name.lower() for c in statement.find_all(exp.CTE)}
        for table in statement.find_all(exp.Table):
            if not table.name or table.name.lower() in ctes:
                continue
            if schema is None:
                names.add(f"{table.db or database}.{table.name}")
            else:
                names.add(f"{table.catalog or database}.{table.db or schema}.{table.name}")
    return sorted(names)


# ------------------------------------------------------------------ S3 and Hive
def s3_location_dataset(
    location: str, *, staging: tuple[str, str] | None = None, facets: dict | None = None, output: dict | None = None
):
    """The data set's S3 location (``s3://bucket/prefix``); ``staging``: (hive namespace, db.table) reading it."""
    from openlineage.client.facet_v2 import symlinks_dataset

    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    facets = dict(facets or {})
    if staging:
        facets["symlinks"] = symlinks_dataset.SymlinksDatasetFacet(
            identifiers=[symlinks_dataset.Identifier(namespace=staging[0], name=staging[1], type="TABLE")]
        )
    return _dataset(f"s3://{bucket}", prefix.strip("/") or "/", facets, output)


def hive_namespace(conn_id: str) -> str:
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    return f"hive://{connection.host}:{connection.port or 10000}"


def hive_dataset(namespace: str, name: str, facets: dict | None = None, output: dict | None = None):
    return _dataset(namespace, name, facets, output)


def export_output(location: str, *, staging=None, rows: int | None, size: int | None, columns, source):
    """The S3 location an export wrote, with its rows, bytes, columns and their 1:1 lineage from ``source``."""
    names = [c for c, _ in columns or []]
    facets = {**_schema(columns), **(_identity(source, names) if source is not None else {})}
    return s3_location_dataset(location, staging=staging, facets=facets, output=_statistics(rows, size))


def export_columns(columns: list | None) -> list[tuple[str, str]]:
    """(name, SQL Server type) of an export's columns (its XCom's ``columns``)."""
    return [(c.name, c.system_type_name or c.type_name or "") for c in columns or [] if c.name]


def file_output(host: str | None, path: str, *, rows: int | None, size: int | None, columns, source):
    """An export file on a worker's disk (file-mode exports)."""
    names = [c for c, _ in columns or []]
    facets = {**_schema(columns), **(_identity(source, names) if source is not None else {})}
    return _dataset(f"file://{host or 'localhost'}", path, facets, _statistics(rows, size))


def file_input(host: str | None, path: str):
    return _dataset(f"file://{host or 'localhost'}", path)


def target_output(
    namespace: str, name: str, *, rows: int | None, columns, identity_from=None, partitions: list | None = None
):
    facets = {**_schema(columns), **(_identity(identity_from, [c for c, _ in columns or []]) if identity_from else {})}
    if partitions:
        facets["flux_partitions"] = partitions_facet(partitions)
    return hive_dataset(namespace, name, facets, _statistics(rows))


def partitions_facet(partitions: list):
    """The partitions a run wrote (a flux facet: OpenLineage has no standard one)."""
    import attr
    from openlineage.client.facet_v2 import DatasetFacet

    @attr.define
    class FluxPartitionsDatasetFacet(DatasetFacet):
        partitions: list = attr.field(factory=list)

    return FluxPartitionsDatasetFacet(partitions=[str(p) for p in partitions])


def copies_columns_unchanged(sql: str, columns: list[str]) -> bool:
    """Whether a transform's SELECT is exactly ``columns`` as plain column references (a 1:1 copy)."""
    import sqlglot
    from sqlglot import exp

    try:
        select = sqlglot.parse_one(sql, read="hive")
    except sqlglot.errors.ParseError:
        return False
    if not isinstance(select, exp.Select) or select.args.get("joins") or select.args.get("group"):
        return False
    picked = []
    for projection in select.expressions:
        column = projection.this if isinstance(projection, exp.Alias) else projection
        if not isinstance(column, exp.Column) or projection.alias_or_name != column.name:
            return False
        picked.append(column.name.lower())
    return picked == [c.lower() for c in columns]
