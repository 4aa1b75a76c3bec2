"""What may reach SQL: identifiers and types from specs and parameters, and a spec's free query. Refused
input fails as a configuration error that names what it was and how to fix it; nothing is quoted around it."""

from __future__ import annotations

import pytest

from flux_provider.errors import ErrorClass, FluxError
from flux_provider.identifiers import hive_identifier, hive_type, sqlserver_identifier, sqlserver_table
from flux_provider.queries import QueryRefused, check_read_only


@pytest.mark.parametrize("name", ["titles", "_t1", "Ab_9", "x" * 128])
def test_plain_names_are_identifiers_in_both_dialects(name):
    assert hive_identifier(name, "table") == name and sqlserver_identifier(name, "table") == name


@pytest.mark.parametrize("name", ["1t", "t-1", "t 1", "t;DROP", "`t`", "[t]", "t'", "", "x" * 129, None, "été"])
def test_anything_else_is_refused_with_what_it_was(name):
    for check in (hive_identifier, sqlserver_identifier):
        with pytest.raises(FluxError) as caught:
            check(name, "target table", dataset="titles")
        assert caught.value.error_class is ErrorClass.CONFIG and caught.value.dataset == "titles"
        assert "target table" in str(caught.value) and repr(name) in str(caught.value)


def test_sql_server_allows_its_own_characters_and_quotes_a_validated_table():
    assert sqlserver_identifier("#tmp@x$", "table") == "#tmp@x$"
    with pytest.raises(FluxError):
        hive_identifier("#tmp", "table")
    assert sqlserver_table("dbo", "titles") == "[dbo].[titles]" and sqlserver_table(None, "t") == "[t]"
    with pytest.raises(FluxError):
        sqlserver_table("dbo]; DROP TABLE x; --", "titles")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("bigint", "BIGINT"),
        (" decimal(18, 2) ", "DECIMAL(18, 2)"),
        ("varchar(40)", "VARCHAR(40)"),
        ("array<string>", "ARRAY<STRING>"),
        ("map<string,int>", "MAP<STRING,INT>"),
    ],
)
def test_hive_types_are_upper_cased(text, expected):
    assert hive_type(text, "column id") == expected


@pytest.mark.parametrize("text", ["TEXT", "DECIMAL(100,2)", "STRING) STORED AS ORC --", "INT; DROP TABLE t", ""])
def test_a_non_hive_type_is_refused(text):
    with pytest.raises(FluxError, match="not a Hive type"):
        hive_type(text, "column id")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id FROM dbo.t",
        "SELECT id FROM dbo.t;",
        "WITH x AS (SELECT id FROM dbo.t) SELECT id FROM x",
        "SELECT a.id FROM dbo.a a JOIN dbo.b b ON a.id = b.id WHERE b.x IN (SELECT x FROM dbo.c)",
        "SELECT id FROM dbo.a UNION ALL SELECT id FROM dbo.b",
        "SELECT id, ROW_NUMBER() OVER (PARTITION BY k ORDER BY id) AS n FROM dbo.t",
    ],
)
def test_one_read_only_select_may_run(sql):
    check_read_only(sql)


@pytest.mark.parametrize(
    "sql,reason",
    [
        ("SELECT 1; SELECT 2", "2 statements"),
        ("SELECT id INTO dbo.copy FROM dbo.t", "SELECT ... INTO"),
        ("DELETE FROM dbo.t", "not a SELECT"),
        ("EXEC sp_who", "not a SELECT"),
        ("SELECT * FROM OPENQUERY(remote, 'DELETE FROM t')", "OPENQUERY"),
        ("SELECT * FROM OPENROWSET('SQLNCLI', 'x', 'SELECT 1')", "OPENROWSET"),
        ("", "empty"),
    ],
)
def test_anything_else_is_refused_with_the_reason_and_a_fix(sql, reason):
    with pytest.raises(QueryRefused) as caught:
        check_read_only(sql)
    assert reason in caught.value.reason and caught.value.fix
