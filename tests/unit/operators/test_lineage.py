"""OpenLineage of the flux operators without a stack: which tables a query reads, when a transform is a 1:1
copy, what an export reports, and that lineage never fails a task."""

from __future__ import annotations

from flux_provider.operators import lineage
from flux_provider.operators.bcp_to_s3 import BcpToS3Operator
from flux_provider.operators.hive_transform import HiveTransformOperator


def test_a_query_reads_the_tables_it_names_with_the_connections_database_and_schema():
    sql = (
        "WITH recent AS (SELECT * FROM dbo.sessions WHERE day > '2026-01-01') "
        "SELECT r.id, t.title FROM recent r JOIN catalog.dbo.titles t ON t.id = r.title_id JOIN genres g ON 1 = 1"
    )
    assert lineage.query_tables(sql, "tsql", "flux", "dbo") == [
        "catalog.dbo.titles",
        "flux.dbo.genres",
        "flux.dbo.sessions",
    ]
    hive = "SELECT v.a FROM `media`.`v_run_1` v LEFT JOIN media.titles_latest t ON t.id = v.id JOIN dims d"
    assert lineage.query_tables(hive, "hive", "media") == ["media.dims", "media.titles_latest", "media.v_run_1"]


def test_a_transform_is_a_one_to_one_copy_only_when_it_selects_the_columns_unchanged():
    assert lineage.copies_columns_unchanged("SELECT id, title FROM `m`.`s`", ["id", "title"])
    assert lineage.copies_columns_unchanged("SELECT id AS id, title FROM s", ["ID", "title"])
    assert not lineage.copies_columns_unchanged("SELECT id, upper(title) AS title FROM s", ["id", "title"])
    assert not lineage.copies_columns_unchanged("SELECT id AS key, title FROM s", ["key", "title"])
    assert not lineage.copies_columns_unchanged("SELECT id, title FROM s JOIN t ON s.id = t.id", ["id", "title"])
    assert not lineage.copies_columns_unchanged("SELECT genre, COUNT(*) AS n FROM s GROUP BY genre", ["genre", "n"])
    assert not lineage.copies_columns_unchanged("not sql at all (", ["id"])


def test_an_export_reports_its_s3_location_rows_schema_and_column_lineage():
    source = lineage._dataset("mssql://db:1433", "flux.dbo.titles")
    out = lineage.export_output(
        "s3://flux/media/titles",
        rows=200,
        size=5000,
        columns=[("id", "int"), ("title", "nvarchar(200)")],
        source=source,
    )
    assert (out.namespace, out.name) == ("s3://flux", "media/titles")
    assert out.outputFacets["outputStatistics"].rowCount == 200 and out.outputFacets["outputStatistics"].size == 5000
    assert [f.name for f in out.facets["schema"].fields] == ["id", "title"]
    (field,) = out.facets["columnLineage"].fields["title"].inputFields
    assert (field.namespace, field.name, field.field) == ("mssql://db:1433", "flux.dbo.titles", "title")


def titles_transform(hiveserver2_conn_id: str) -> HiveTransformOperator:
    """A transform that copies the titles' staging table into media.titles."""
    return HiveTransformOperator(
        task_id="transform",
        dataset="titles",
        database="media",
        staging_table="titles_staging",
        target_table="titles",
        sql="SELECT * FROM media.titles_staging",
        hiveserver2_conn_id=hiveserver2_conn_id,
    )


def test_lineage_never_fails_a_task(capsys):
    """A connection that does not exist (or any other error) is logged and nothing is reported."""
    export = BcpToS3Operator(
        task_id="export_upload",
        dataset="titles",
        schema="dbo",
        table="titles",
        mssql_conn_id="no_such_connection",
        s3_location="s3://flux/media/titles",
    )
    transform = titles_transform("no_such_connection")
    assert export.get_openlineage_facets_on_start() is None
    assert transform.get_openlineage_facets_on_complete(None) is None
    logged = capsys.readouterr().out  # Airflow's task logger (structlog) writes here
    assert logged.count("lineage not reported") == 2 and "no_such_connection" in logged


def test_a_finished_transform_reports_the_columns_its_record_lists(monkeypatch):
    """After a successful try the target's schema comes from the transform's record (its staged columns)."""
    from flux_provider.handoffs import HiveColumn, TransformResult

    monkeypatch.setenv("AIRFLOW_CONN_HIVE_UNIT", '{"conn_type": "hiveserver2", "host": "hive", "port": 10000}')
    op = titles_transform("hive_unit")
    op.flux_result = TransformResult(
        dataset="titles",
        run="r",
        target="`media`.`titles`",
        manifest_rows=3,
        staging_rows=3,
        target_rows=3,
        columns=[HiveColumn("id", "BIGINT"), HiveColumn("title", "STRING")],
    ).to_json()
    _, (output,) = op.lineage(complete=True)
    assert [(f.name, f.type) for f in output.facets["schema"].fields] == [("id", "BIGINT"), ("title", "STRING")]
    assert output.outputFacets["outputStatistics"].rowCount == 3
