"""HiveTransformOperator and PartitionRefreshOperator (pure): type mapping, literals, validation before any SQL."""

from __future__ import annotations

import datetime as dt

import pytest

from flux_provider.errors import ErrorClass, FluxError
from flux_provider.formats.export_file import Column
from flux_provider.formats.hive_ddl import sql_string, staging_column
from flux_provider.operators.hive_transform import HiveTransformOperator


# ------------------------------------------------------------------ pure: type mapping and literals
@pytest.mark.parametrize(
    "system_type, precision, scale, raw, hive",
    [
        ("bigint", 19, 0, "BIGINT", "BIGINT"),
        ("tinyint", 3, 0, "SMALLINT", "SMALLINT"),
        ("bit", 1, 0, "TINYINT", "BOOLEAN"),
        ("decimal(38,10)", 38, 10, "DECIMAL(38,10)", "DECIMAL(38,10)"),
        ("numeric(5,0)", 5, 0, "DECIMAL(5,0)", "DECIMAL(5,0)"),
        ("money", 19, 4, "DECIMAL(19,4)", "DECIMAL(19,4)"),
        ("float", 53, 0, "DOUBLE", "DOUBLE"),
        ("real", 24, 0, "FLOAT", "FLOAT"),
        ("date", 10, 0, "DATE", "DATE"),
        ("datetime2(6)", 26, 6, "TIMESTAMP", "TIMESTAMP"),
        ("datetime2(7)", 27, 7, "STRING", "STRING"),
        ("datetime", 23, 3, "TIMESTAMP", "TIMESTAMP"),
        ("time(7)", 16, 7, "STRING", "STRING"),
        ("varbinary(300)", 0, 0, "STRING", "BINARY"),
        ("nvarchar(400)", 0, 0, "STRING", "STRING"),
        ("geography", 0, 0, "STRING", "STRING"),
    ],
)
def test_sql_server_types_map_to_exact_hive_types(system_type, precision, scale, raw, hive):
    column = Column.from_system_type("c", system_type, precision=precision, scale=scale)
    staged = staging_column(column, timestamp_precision=6)
    assert (staged.raw_type, staged.hive_type) == (raw, hive)
    assert (staged.lossy_note is not None) == (system_type in ("datetime2(7)", "geography"))


def test_datetime2_7_is_a_timestamp_where_the_engine_keeps_nanoseconds():
    column = Column.from_system_type("c", "datetime2(7)", precision=27, scale=7)
    assert staging_column(column, timestamp_precision=9).hive_type == "TIMESTAMP"


def test_sql_literals_escape_quotes_backslashes_and_control_characters():
    assert sql_string("it's \\N") == "'it\\'s \\\\N'"
    assert sql_string("\x01") == "'\\001'"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"database": "media; DROP TABLE x"}, "database 'media; DROP TABLE x' is not a valid Hive identifier"),
        ({"target_table": "a.b"}, "target table 'a.b' is not a valid Hive identifier"),
        ({"dynamic_partitions": ["day`"]}, "dynamic partition column 'day`'"),
        ({"partition": {"1day": "x"}}, "partition column '1day'"),
        ({"target_columns": {"id": "BIGINT; DROP"}, "partition_types": {}}, "not a Hive type"),
        ({"expect_rows": "all"}, "expect_rows 'all'"),
    ],
)
def test_identifiers_and_options_are_validated_before_any_sql(kwargs, fragment):
    args = dict(task_id="t", dataset="ds", database="media", target_table="t", staging_table="s", sql="SELECT 1")
    with pytest.raises(FluxError) as failure:  # when the DAG is built: a terminal class, typed when it runs
        HiveTransformOperator(**{**args, **kwargs})
    assert failure.value.error_class is ErrorClass.CONFIG and failure.value.terminal and fragment in str(failure.value)
    assert "data set 'ds'" in str(failure.value)


def test_retention_reference_must_be_a_date():
    from flux_provider.formats.hive_refresh import day

    assert day("20240105", "x") == dt.date(2024, 1, 5)
    with pytest.raises(FluxError, match="retention_reference: 'yesterday' is not a date") as failure:
        day("yesterday", "retention_reference")
    assert failure.value.terminal


def test_a_transform_given_an_upload_that_lacks_its_facts_names_them():
    from flux_provider.errors import FluxTerminalError
    from flux_provider.operators.hive_transform import HiveTransformOperator

    op = HiveTransformOperator(
        task_id="t",
        dataset="ds",
        database="media",
        target_table="t",
        staging_table="s",
        sql="SELECT 1",
        upload={"bucket": "b", "manifest": "m"},
    )
    with pytest.raises(FluxTerminalError, match=r"lacks dataset, prefix, rows.*pass upload= \(an upload's XCom\)"):
        op._upload_info({})
