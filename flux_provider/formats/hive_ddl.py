"""Hive DDL for the staging objects that read an upload exactly.

The upload (see :mod:`flux_provider.formats.hive_text`) is LazySimpleSerDe text
whose values are rendered the way bcp renders SQL Server types. Two objects make
it readable with exact Hive types:

* ``<staging>_raw``: an external text table, partitioned by ``flux_run`` (one
  partition per published run, located at the run's S3 prefix), whose column
  types are ones LazySimpleSerDe parses exactly from that text;
* ``<staging>``: a view over one run's partition that converts the few columns
  whose text needs it (``bit`` 0/1 -> BOOLEAN, binary hex -> BINARY via
  ``unhex``). The transform reads the view.

Type mapping (SQL Server -> Hive), chosen for exactness:

==============================================  =====================================
bigint / int / smallint                         BIGINT / INT / SMALLINT
tinyint (0..255)                                SMALLINT (Hive's TINYINT stops at 127)
bit                                             BOOLEAN
decimal(p,s) / numeric(p,s)                     DECIMAL(p,s)
money / smallmoney                              DECIMAL(19,4) / DECIMAL(10,4)
float / real                                    DOUBLE / FLOAT
date                                            DATE
datetime2(s), datetime, smalldatetime           TIMESTAMP when the engine keeps ``s``
                                                fractional digits, else STRING (below)
datetimeoffset, time                            STRING (Hive has no such types)
binary / varbinary / image / rowversion         BINARY
char / varchar / nchar / nvarchar / text / ...  STRING
==============================================  =====================================

``timestamp_precision`` is the number of fractional second digits the Hive
engine keeps: 9 for Apache Hive, 6 for Spark (Spark Thrift Server, the local
stack). A ``datetime2(7)`` column on Spark would silently lose its last digit
as TIMESTAMP, so it stays STRING (exact text, ``CAST(col AS TIMESTAMP)`` in the
transform if microseconds are enough) and the operator logs a warning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flux_provider.encoding import HiveTextEncoding
from flux_provider.formats.export_file import Column

RUN_PARTITION = "flux_run"

_SIMPLE = {
    "bigint": "BIGINT",
    "int": "INT",
    "smallint": "SMALLINT",
    "tinyint": "SMALLINT",
    "float": "DOUBLE",
    "real": "FLOAT",
    "date": "DATE",
    "money": "DECIMAL(19,4)",
    "smallmoney": "DECIMAL(10,4)",
}
_TEXT = {
    "char",
    "varchar",
    "nchar",
    "nvarchar",
    "text",
    "ntext",
    "sysname",
    "xml",
    "uniqueidentifier",
    "sql_variant",
    "time",
    "datetimeoffset",
}
_BINARY = {"binary", "varbinary", "image", "timestamp", "rowversion"}
_TIMESTAMP = {"datetime2": None, "datetime": 3, "smalldatetime": 0}


@dataclass(frozen=True)
class StagingColumn:
    name: str
    raw_type: str  # type in the external text table
    hive_type: str  # type the view presents
    source_type: str  # the SQL Server type, for comments and messages
    expression: str  # the view's expression over the raw column
    lossy_note: str | None = None  # why it is STRING rather than a closer type


def staging_column(column: Column, *, timestamp_precision: int = 6) -> StagingColumn:
    kind, quoted = column.type_name.lower(), f"`{column.name}`"
    source = column.system_type_name or kind

    def plain(hive_type: str, note: str | None = None) -> StagingColumn:
        return StagingColumn(column.name, hive_type, hive_type, source, quoted, note)

    if kind in _SIMPLE:
        return plain(_SIMPLE[kind])
    if kind in ("decimal", "numeric"):
        return plain(f"DECIMAL({column.precision},{column.scale})")
    if kind == "bit":
        return StagingColumn(column.name, "TINYINT", "BOOLEAN", source, f"CAST({quoted} AS BOOLEAN)")
    if kind in _BINARY:
        return StagingColumn(column.name, "STRING", "BINARY", source, f"unhex({quoted})")
    if kind in _TIMESTAMP:
        digits = _TIMESTAMP[kind] if _TIMESTAMP[kind] is not None else column.scale
        if digits <= timestamp_precision:
            return plain("TIMESTAMP")
        return plain(
            "STRING",
            f"{source} has {digits} fractional digits, the Hive engine keeps {timestamp_precision}: kept as exact text",
        )
    if kind in _TEXT:
        return plain("STRING")
    return plain("STRING", f"no exact Hive type known for {source}: kept as text")


def sql_string(value: str) -> str:
    """A Hive/Spark SQL string literal; control characters as octal escapes (``'\\001'``)."""
    out = []
    for ch in value:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def serde_properties(encoding: HiveTextEncoding) -> dict[str, str]:
    """SERDEPROPERTIES for the encoding a manifest records."""
    for key in ("field", "collection", "map_key"):
        value = getattr(encoding, key)
        if ord(value) > 127:
            raise ValueError(f"the manifest's {key} delimiter {value!r} is not one ASCII character")
    return {
        "field.delim": encoding.field,
        "serialization.format": encoding.field,
        "collection.delim": encoding.collection,
        "mapkey.delim": encoding.map_key,
        "escape.delim": encoding.ESCAPE,
        "serialization.null.format": encoding.null,
        "serialization.escape.crlf": "true",
    }


def raw_table_ddl(table: str, columns: list[StagingColumn], encoding: HiveTextEncoding, location: str) -> str:
    """CREATE EXTERNAL TABLE for the raw text table; ``table`` is already validated and qualified."""
    cols = ",\n  ".join(f"`{c.name}` {c.raw_type} COMMENT {sql_string(c.source_type)}" for c in columns)
    props = ", ".join(f"{sql_string(k)}={sql_string(v)}" for k, v in serde_properties(encoding).items())
    body = (
        f"(\n  {cols}\n)\nPARTITIONED BY (`{RUN_PARTITION}` STRING)\n"
        f"ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe'\n"
        f"WITH SERDEPROPERTIES ({props})\nSTORED AS TEXTFILE\nLOCATION {sql_string(location)}"
    )
    fingerprint = hashlib.sha256(body.encode()).hexdigest()[:16]
    return (
        f"CREATE EXTERNAL TABLE {table} {body}\n"
        f"TBLPROPERTIES ('flux.ddl'={sql_string(fingerprint)}, 'serialization.escape.crlf'='true')"
    )


def ddl_fingerprint(ddl: str) -> str:
    return ddl.split("'flux.ddl'='", 1)[1].split("'", 1)[0]


def staging_view_ddl(view: str, raw_table: str, columns: list[StagingColumn], run: str) -> str:
    exprs = ",\n  ".join(
        c.expression if c.expression == f"`{c.name}`" else f"{c.expression} AS `{c.name}`" for c in columns
    )
    return (
        f"CREATE OR REPLACE VIEW {view} AS SELECT\n  {exprs}\nFROM {raw_table}\n"
        f"WHERE `{RUN_PARTITION}` = {sql_string(run)}"
    )


def partition_clause(values: dict[str, str | None]) -> str:
    """``PARTITION (a='x', b)``: a None value is a dynamic partition column."""
    parts = [f"`{k}`" if v is None else f"`{k}`={sql_string(str(v))}" for k, v in values.items()]
    return f"PARTITION ({', '.join(parts)})"


def partition_predicate(values: dict[str, str], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return " AND ".join(f"{prefix}`{k}` = {sql_string(str(v))}" for k, v in values.items()) or "TRUE"


def partition_name(values: dict) -> str:
    """Hive's partition name ``a=1/b=x`` (``/``, ``=`` and ``%`` in values percent-escaped)."""
    from urllib.parse import quote

    return "/".join(f"{k}={quote(str(v), safe=' -_.:,+')}" for k, v in values.items())


def parse_partition_name(name: str) -> dict[str, str]:
    from urllib.parse import unquote

    return dict((k, unquote(v)) for k, v in (part.split("=", 1) for part in name.split("/") if part))
