"""Validation of identifiers that come from specs or parameters, before they reach any SQL."""

from __future__ import annotations

import re

from flux_provider.error_taxonomy import ErrorClass, FluxError

# SQL Server regular identifiers (letters, digits, _ @ # $; not starting with a digit or $), and
# Hive's (letters, digits, underscore). Anything else is refused rather than quoted.
_SQLSERVER = re.compile(r"^[A-Za-z_@#][A-Za-z0-9_@#$]{0,127}$")
_HIVE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _identifier(value: str, what: str, pattern: re.Pattern, dialect: str, rules: str, dataset: str | None) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise FluxError(
            f"{what} {value!r} is not a valid {dialect} identifier ({rules})",
            error_class=ErrorClass.CONFIG,
            fix="fix the spec or parameter",
            dataset=dataset,
        )
    return value


def sqlserver_identifier(value: str, what: str, *, dataset: str | None = None) -> str:
    return _identifier(
        value,
        what,
        _SQLSERVER,
        "SQL Server",
        "letters, digits, _ @ # $, at most 128, not starting with a digit",
        dataset,
    )


def hive_identifier(value: str, what: str, *, dataset: str | None = None) -> str:
    return _identifier(
        value, what, _HIVE, "Hive", "letters, digits and _, not starting with a digit, at most 128", dataset
    )


def sqlserver_table(schema: str | None, table: str, *, dataset: str | None = None) -> str:
    """``[schema].[table]`` after validating both parts."""
    parts = ([sqlserver_identifier(schema, "schema", dataset=dataset)] if schema else []) + [
        sqlserver_identifier(table, "table", dataset=dataset)
    ]
    return ".".join(f"[{p}]" for p in parts)


_HIVE_PRIMITIVE = (
    r"(TINYINT|SMALLINT|INT|INTEGER|BIGINT|BOOLEAN|FLOAT|DOUBLE|STRING|BINARY|DATE|TIMESTAMP|"
    r"DECIMAL(\(\s*\d{1,2}\s*(,\s*\d{1,2}\s*)?\))?|VARCHAR\(\s*\d+\s*\)|CHAR\(\s*\d+\s*\))"
)
_HIVE_TYPE = re.compile(rf"^({_HIVE_PRIMITIVE}|(ARRAY|MAP|STRUCT)<[A-Za-z0-9_<>,:() ]+>)$", re.I)


def hive_type(value: str, what: str, *, dataset: str | None = None) -> str:
    """A Hive column type (primitive, ``DECIMAL(p,s)``, ``VARCHAR(n)``, ``ARRAY<..>``/``MAP<..>``/``STRUCT<..>``),
    upper-cased; anything else is a configuration error naming ``what``."""
    text = str(value).strip()
    if not _HIVE_TYPE.match(text):
        raise FluxError(
            f"{what} has type {value!r}, which is not a Hive type (BIGINT, INT, "
            "DECIMAL(p,s), STRING, VARCHAR(n), TIMESTAMP, DATE, BOOLEAN, BINARY, ARRAY<...>, ...); "
            "fix the spec or parameter",
            error_class=ErrorClass.CONFIG,
            dataset=dataset,
        )
    return text.upper()


def dag_id_for(dataset: str) -> str:
    """A data set's DAG id, which is also its pool's default name."""
    return f"flux_{dataset}"
