"""A spec's source side: the source table and query, splits, export, chunking, landing and S3 location."""

from __future__ import annotations

import re

from flux_provider.identifiers import sqlserver_identifier
from flux_provider.queries import QueryRefused, check_read_only
from flux_provider.retention import LandingRule
from flux_provider.specs.model import (
    Chunking,
    DatasetSpec,
    Export,
    Source,
    Split,
)
from flux_provider.specs.spec_reader import SpecReader
from flux_provider.splits import MAX_PARTS

_S3_URI = re.compile(r"^s3a?://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[A-Za-z0-9!_.*'()/=-]*)?$")


def delimiter(text: str) -> str:
    r"""``\001`` (octal), ``\t``, ``\N``-style escapes or one character, as in Hive DDL."""
    if re.fullmatch(r"\\[0-7]{3}", text):
        return chr(int(text[1:], 8))
    if text in ("\\t", "\\n", "\\\\"):
        return {"\\t": "\t", "\\n": "\n", "\\\\": "\\"}[text]
    return text


class SourceSections(SpecReader):
    """Reads ``<source>``, ``<split>``, ``<export>``, ``<chunking>``, ``<landing>`` and ``<s3>``."""

    def source(self) -> Source:
        el = self.find("source")
        schema, table = el.get("schema"), el.get("table")
        queries = el.findall("query")
        query = queries[0] if queries else None
        count = self.find("countQuery", el)
        if (table is None) == (query is None):
            raise self.error(
                el,
                "give either table= (with schema=) or a <query>, not both and not neither",
                fix='<source schema="dbo" table="titles"/> or <source><query>SELECT ...</query></source>',
            )
        if table is not None:
            self.ident(el, "table", sqlserver_identifier, "table")
            if schema is not None:
                self.ident(el, "schema", sqlserver_identifier, "schema")
        for element in queries:
            if not (element.text or "").strip():
                raise self.error(element, "the query is empty", fix="write the SELECT to export")
        for element in (*queries, count) if self.check_queries else ():
            if element is not None and (element.text or "").strip():
                try:
                    check_read_only(element.text)
                except QueryRefused as exc:
                    raise self.error(element, exc.reason, fix=exc.fix) from None
        named = self.named_queries(queries)
        return Source(
            connection=el.get("connection", "mssql_default"),
            schema=schema,
            table=table,
            query=(query.text or "").strip() if query is not None and not named else None,
            count_query=(count.text or "").strip() if count is not None else None,
            split=self.split(self.find("split", el), named),
            queries=named,
        )

    def check_split(self, spec: DatasetSpec) -> None:
        source = self.find("source")
        if spec.source.is_split and spec.export.mode != "streaming":
            raise self.error(
                self.find("export"),
                "a split export runs each part as one streaming task: mode 'file' cannot be split",
                fix='<export mode="streaming"/> (the default), or remove the <split>/named queries',
                attribute="mode",
            )
        if spec.source.split and spec.source.split.every and not spec.schedule.cron:
            raise self.error(
                self.find("split", source),
                f"a split every {spec.source.split.every} exports each run's data interval, and this data set's "
                "runs have none (they run <after> other data sets, or only by hand)",
                fix="give the data set a <cron> schedule, or split by parts=",
                attribute="every",
            )

    def named_queries(self, queries) -> tuple[tuple[str, str], ...]:
        """Several ``<query name=...>``: one part each (a single query is the data set's query)."""
        if len(queries) < 2:
            return ()
        names: dict[str, int] = {}
        for element in queries:
            name = element.get("name")
            if not name:
                raise self.error(
                    element,
                    "with several <query> elements each is a part of the export and needs a name",
                    fix='<query name="eu">SELECT ...</query> (letters, digits and _)',
                )
            if name.lower() in names:
                raise self.error(
                    element,
                    f"the query name {name!r} is already used on line {names[name.lower()]}",
                    fix="give each <query> a name of its own",
                    attribute="name",
                )
            names[name.lower()] = element.sourceline
        if len(queries) > MAX_PARTS:
            raise self.error(queries[0], f"{len(queries)} queries: at most {MAX_PARTS} parts per run")
        return tuple((e.get("name"), e.text.strip()) for e in queries)

    def split(self, el, named) -> Split | None:
        if el is None:
            return None
        if named:
            raise self.error(
                el,
                "a <split> cuts one table or query into parts; the named <query> elements are parts already",
                fix="remove the <split>, or keep one query and split it",
            )
        column = self.ident(el, "column", sqlserver_identifier, "split column")
        parts, every = self.number(el, "parts"), el.get("every")
        if (parts is None) == (every is None):
            raise self.error(
                el,
                "give exactly one of parts= (key ranges) or every= (one part per day or hour of the run)",
                fix=f'<split column="{column}" parts="8"/> or <split column="{column}" every="day"/>',
            )
        if parts is not None and parts > MAX_PARTS:
            raise self.error(
                el,
                f"parts={parts}: at most {MAX_PARTS} parts per run (each is a task and a query on the source)",
                fix="the pool bounds how many run at once; 4 to 64 parts is typical",
                attribute="parts",
            )
        return Split(column=column, parts=parts, every=every)

    def export(self) -> Export:
        el = self.find("export")
        return Export() if el is None else self.attributes(el, Export)

    def chunking(self) -> Chunking:
        el = self.find("chunking")
        if el is None:
            return Chunking()
        delimiters = {
            a: delimiter(el.get(a, d))
            for a, d in (("fieldDelimiter", "\\001"), ("collectionDelimiter", "\\002"), ("mapKeyDelimiter", "\\003"))
        }
        for attribute, value in delimiters.items():
            if len(value) != 1 or ord(value) > 127 or value in "\n\r\\":
                raise self.error(
                    el,
                    f"{el.get(attribute)!r} is not one ASCII character other than newline and backslash",
                    fix=r"write an octal escape like \001",
                    attribute=attribute,
                )
        if len(set(delimiters.values())) != 3:
            raise self.error(
                el,
                "the field, collection and map-key delimiters must differ",
                fix=r"use the Hive defaults \001, \002, \003",
            )
        return Chunking(
            chunk_mb=self.number(el, "sizeMb", float, Chunking.chunk_mb),
            chunk_rows=self.number(el, "rows"),
            compression=None if el.get("compression") == "none" else "gzip",
            field_delimiter=delimiters["fieldDelimiter"],
            collection_delimiter=delimiters["collectionDelimiter"],
            map_key_delimiter=delimiters["mapKeyDelimiter"],
            null_format=el.get("nullFormat", "\\N"),
        )

    def landing(self) -> LandingRule:
        el, default = self.find("s3"), LandingRule()
        return LandingRule(
            keep_runs=self.number(el, "keepRuns", int, default.keep_runs),
            keep_days=self.number(el, "keepDays", float, default.keep_days),
        )

    def s3_location(self) -> str:
        el = self.find("s3")
        location = el.get("location")
        if not _S3_URI.match(location) or "//" in location.split("://", 1)[1] or ".." in location:
            raise self.error(
                el,
                f"{location!r} is not an S3 location",
                attribute="location",
                fix="write s3://bucket/prefix (lowercase bucket name, no '..' or '//')",
            )
        return "s3://" + location.split("://", 1)[1].rstrip("/")
