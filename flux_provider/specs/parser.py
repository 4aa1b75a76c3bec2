"""Build a :class:`~flux_provider.specs.model.DatasetSpec` from a spec file, checking what a schema cannot.

The file is read and validated by :mod:`flux_provider.specs.spec_xml` (XML
safety, the XSD); this module builds the model and checks identifiers, types,
queries, splits and rules. Errors are :class:`SpecError` with the file, line,
element, the bad value and how to fix it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from flux_provider.calendars import DAYS, Calendar, Window
from flux_provider.errors import FluxError
from flux_provider.hooks.landing import LandingRule
from flux_provider.identifiers import dag_id_for, hive_identifier, hive_type, sqlserver_identifier
from flux_provider.queries import QueryRefused, check_read_only
from flux_provider.rules import ELEMENTS, Action, Match, Rule
from flux_provider.specs.model import (
    Chunking,
    DatasetSpec,
    Deadline,
    Export,
    Hive,
    HivePartition,
    Refresh,
    Schedule,
    Source,
    Split,
    Throttle,
)
from flux_provider.specs.spec_error import SpecError
from flux_provider.specs.spec_xml import XSD, element_line, parse_xml, preload, validate_schema
from flux_provider.splits import MAX_PARTS

_S3_URI = re.compile(r"^s3a?://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[A-Za-z0-9!_.*'()/=-]*)?$")


def delimiter(text: str) -> str:
    r"""``\001`` (octal), ``\t``, ``\N``-style escapes or one character, as in Hive DDL."""
    if re.fullmatch(r"\\[0-7]{3}", text):
        return chr(int(text[1:], 8))
    if text in ("\\t", "\\n", "\\\\"):
        return {"\\t": "\t", "\\n": "\n", "\\\\": "\\"}[text]
    return text


def load_spec(path: Path | str, *, check_queries: bool = True) -> DatasetSpec:
    """Parse, validate and check one spec file.

    ``check_queries=False`` skips the T-SQL parse of free queries (:func:`~flux_provider.queries.check_read_only`,
    sqlglot): DAG files load specs that way, so parsing a DAG imports no SQL parser. ``specs check`` checks them,
    and so does the export before it runs one (a refused query fails the task at once, as a configuration
    error)."""
    path = Path(path)
    tree = parse_xml(path)
    validate_schema(path, tree)
    return _Builder(path, tree.getroot(), check_queries=check_queries).build()


class _Builder:
    def __init__(self, path: Path, root, *, check_queries: bool = True):
        self.path, self.root, self.check_queries = path, root, check_queries
        self.name = root.get("name")

    # ------------------------------------------------------------------ helpers
    def find(self, tag: str, parent=None):
        return (parent if parent is not None else self.root).find(tag)

    def error(self, element, message: str, fix: str | None = None, attribute: str | None = None) -> SpecError:
        tag = element.tag if element is not None else None
        if tag and attribute:
            tag += f" {attribute}="
        return SpecError(
            self.path, message, line=getattr(element, "sourceline", None), element=tag, fix=fix, dataset=self.name
        )

    def ident(self, element, attribute: str, check, what: str, value: str | None = None) -> str:
        value = element.get(attribute) if value is None else value
        try:
            return check(value, what)
        except FluxError as exc:
            raise self.error(
                element,
                exc.message,
                fix=f"rename the {what} to letters, digits and _ (not starting with a digit)",
                attribute=attribute,
            ) from None

    def hive_ident(self, element, attribute: str, what: str, value: str | None = None) -> str:
        return self.ident(element, attribute, hive_identifier, what, value)

    def column_type(self, element, attribute: str, what: str, default: str | None = None) -> str:
        value = element.get(attribute, default)
        try:
            return hive_type(value, what, dataset=self.name)
        except FluxError:
            raise self.error(
                element,
                f"{value!r} is not a Hive column type",
                attribute=attribute,
                fix="BIGINT, INT, DECIMAL(p,s), STRING, VARCHAR(n), TIMESTAMP, DATE, BOOLEAN, BINARY, ARRAY<...>, ...",
            ) from None

    @staticmethod
    def flag(element, attribute: str, default: bool = False) -> bool:
        value = element.get(attribute) if element is not None else None
        return default if value is None else value in ("true", "1")

    @staticmethod
    def number(element, attribute: str, kind=int, default=None):
        value = element.get(attribute) if element is not None else None
        return default if value is None else kind(value)

    # ------------------------------------------------------------------ sections
    def build(self) -> DatasetSpec:
        if self.name != self.path.stem:
            other = self.path.with_name(f"{self.name}.xml")
            if other.exists():
                raise self.error(
                    self.root,
                    f"the data set name {self.name!r} is already declared by {other}",
                    fix=f'give this data set a name of its own: name="{self.path.stem}" (the '
                    f"file's name), or delete one of {self.path.name} and {other.name}",
                    attribute="name",
                )
            raise self.error(
                self.root,
                f"the data set {self.name!r} is in a file named {self.path.name!r}",
                fix=f"rename the file to {self.name}.xml (one file per data set, named after it)",
                attribute="name",
            )
        alerts = self.find("alerts")
        hive = self.hive()
        spec = DatasetSpec(
            name=self.name,
            path=self.path,
            owner=self.find("owner").text.strip(),
            description=(self.find("description").text or "").strip() if self.find("description") is not None else "",
            emails=tuple(e.text.strip() for e in alerts.iter("email")) if alerts is not None else (),
            webhooks=tuple(self.webhook(e) for e in alerts.iter("webhook")) if alerts is not None else (),
            source=self.source(),
            export=self.export(),
            chunking=self.chunking(),
            s3_location=self.s3_location(),
            s3_connection=self.find("s3").get("connection", "aws_default"),
            hive=hive,
            refresh=self.refresh(hive),
            schedule=self.schedule(),
            throttle=self.throttle(),
            rules=self.rules(),
            deadline=self.deadline(),
            calendar=self.calendar(),
            landing=self.landing(),
        )
        self.check_split(spec)
        for email in spec.emails:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
                raise self.error(alerts, f"{email!r} is not an e-mail address", fix="write name@domain")
        return spec

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

    def attributes(self, element, model: type):
        """``model`` (a dataclass) from ``element``'s attributes, each named like its field in camelCase
        (``batch_size`` is ``batchSize=``) and typed like it; an absent attribute keeps the field's default
        (the XSD's, which a unit test checks). The XSD has checked each value's type already."""
        values = {}
        for f in dataclasses.fields(model):
            text = element.get(_camel(f.name))
            if text is not None:
                values[f.name] = _as_type(text, str(f.type))
        return model(**values)

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
            size_mb=self.number(el, "sizeMb", float, 32),
            rows=self.number(el, "rows"),
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

    def hive(self) -> Hive:
        el = self.find("hive")
        database = self.hive_ident(el, "database", "database")
        target = self.hive_ident(el, "targetTable", "target table")
        staging = self.hive_ident(el, "stagingTable", "staging table", el.get("stagingTable") or f"{self.name}_staging")
        columns = {}
        for col in el.iter("column"):
            name = self.hive_ident(col, "name", "column")
            columns[name] = self.column_type(col, "type", f"column {name!r}")
        partitions = self.partitions(el)
        transform = self.find("transform", el)
        sql, transform_file = self.transform_sql(transform)
        self._check_partitions_in_transform(transform, sql, partitions)
        expect = self.find("expect", el)
        return Hive(
            connection=el.get("connection", "hiveserver2_default"),
            metastore=el.get("metastore", "metastore_default"),
            database=database,
            staging_table=staging,
            target_table=target,
            format=el.get("format", "PARQUET"),
            columns=columns,
            partitions=tuple(partitions),
            transform_sql=sql,
            transform_file=transform_file,
            expect_rows=self.expect_rows(expect),
            min_rows=self.number(expect, "minRows"),
            create_database=self.flag(el, "createDatabase"),
            timestamp_precision=self.number(el, "timestampPrecision", default=6),
        )

    def partitions(self, el) -> list[HivePartition]:
        partitions = []
        for part in el.iter("partition"):
            name = self.hive_ident(part, "name", "partition column")
            part_type = self.column_type(part, "type", f"partition column {name!r}", default="STRING")
            partitions.append(HivePartition(name, part_type, part.get("value")))
        kinds = ["static" if p.value is not None else "dynamic" for p in partitions]
        if "dynamic" in kinds and "static" in kinds[kinds.index("dynamic") :]:
            raise self.error(
                el, "a static partition (value=) cannot follow a dynamic one", fix="list static partitions first"
            )
        return partitions

    def webhook(self, element) -> str:
        """A ``<webhook>`` URL: http or https only (urllib would also open ``file:`` and ``ftp:`` URLs)."""
        url = (element.text or "").strip()
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("http", "https") or not rest.split("/", 1)[0]:
            raise self.error(element, f"{url!r} is not an http or https URL", fix="https://host/path")
        return url

    def transform_sql(self, transform) -> tuple[str, Path | None]:
        """(the transform's SQL, its file or None): inline, or read from ``file=`` beside the spec."""
        sql, file = (transform.text or "").strip(), transform.get("file")
        if bool(sql) == bool(file):
            raise self.error(
                transform,
                "give the transform SQL inline or as file=, not both and not neither",
                fix='<transform file="transforms/x.hql"/> or <transform>SELECT ...</transform>',
            )
        if not file:
            return sql, None
        transform_file = self.named_file(transform, file, "transform file")
        if transform_file.suffix not in (".sql", ".hql"):
            raise self.error(
                transform, f"{file!r} does not end with .sql or .hql", attribute="file", fix="rename the file"
            )
        return transform_file.read_text(), transform_file

    def named_file(self, element, file: str, what: str) -> Path:
        """The file an element's ``file=`` names, checked before anything opens it: it must resolve, symlinks
        followed, inside the spec's own folder or below it. A spec is data a DAG folder trusts as far as that
        folder: a path that leaves it (``..``, absolute, a symlink out) could show any file of the host in the
        DAG's docs and the task's SQL."""
        folder = self.path.parent.resolve()
        found = (folder / file).resolve()
        if not found.is_relative_to(folder):
            raise self.error(
                element,
                f"the {what} {file!r} is outside the spec's folder {folder} (it resolves to {found})",
                attribute="file",
                fix=f"move the file into {folder} or a folder below it, and name it relative to the spec",
            )
        if not found.is_file():
            raise self.error(
                element,
                f"the {what} {file!r} does not exist (looked for {found})",
                attribute="file",
                fix="give a path relative to the spec file",
            )
        return found

    def expect_rows(self, expect) -> str | int | None:
        rows = expect.get("rows") if expect is not None else None
        if rows is None or rows == "staging":
            return rows
        if not rows.isdigit():
            raise self.error(
                expect,
                f"{rows!r} is neither 'staging' nor a number of rows",
                attribute="rows",
                fix='rows="staging" for a 1:1 transform',
            )
        return int(rows)

    def _check_partitions_in_transform(self, element, sql: str, partitions: list[HivePartition]) -> None:
        """A dynamic partition column must be an output column of the SELECT, named like the partition."""
        for part in partitions:
            if part.value is not None:
                continue
            if not re.search(rf"(\bAS\s+`?{part.name}`?|[\s,.`]{part.name}`?)\s*(,|\bFROM\b)", sql, re.I):
                raise self.error(
                    element,
                    f"the dynamic partition column {part.name!r} is not an output column of the transform",
                    fix=f"select it last: ..., <expr> AS {part.name} FROM ...",
                )

    def refresh(self, hive: Hive) -> Refresh:
        el = self.find("refresh")
        if el is None:
            return Refresh()
        days, column = self.number(el, "retentionDays"), el.get("retentionColumn")
        if (days is None) != (column is None):
            raise self.error(
                el,
                "retention needs both retentionDays= and retentionColumn=",
                fix='retentionDays="400" retentionColumn="day"',
            )
        if column is not None and column not in {p.name for p in hive.partitions}:
            raise self.error(
                el,
                f"retentionColumn {column!r} is not a partition of the target",
                attribute="retentionColumn",
                fix="name one of the <partition> columns",
            )
        if not hive.partitions and (el.get("latestView") or days is not None):
            raise self.error(
                el,
                "the target has no <partition>: there is no newest partition to point at and nothing to drop",
                fix="partition the target or remove <refresh>",
            )
        latest = el.get("latestView")
        if latest is not None:
            self.hive_ident(el, "latestView", "latest view")
        return Refresh(
            latest_view=latest,
            retention_days=days,
            retention_column=column,
            purge=self.flag(el, "purge"),
            analyze=self.flag(el, "analyze"),
            repair=self.flag(el, "repair"),
        )

    def schedule(self) -> Schedule:
        from croniter import croniter

        el = self.find("schedule")
        cron_el, preset_el = self.find("cron", el), self.find("preset", el)
        after = tuple(a.text.strip() for a in el.iter("after"))
        cron = None
        if cron_el is not None:
            cron = (cron_el.text or "").strip()
            if not croniter.is_valid(cron):
                raise self.error(
                    cron_el,
                    f"{cron!r} is not a cron expression",
                    fix="five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *'",
                )
        elif preset_el is not None and preset_el.text.strip() != "none":
            cron = preset_el.text.strip()
        if self.name in after:
            raise self.error(el, f"the data set waits for itself ({self.name!r})", fix="remove that <after>")
        tz = self.time_zone(el, el.get("timezone", "UTC"))
        return Schedule(
            cron=cron,
            after=after,
            start=el.get("start", "2026-01-01"),
            catchup=self.flag(el, "catchup"),
            timezone=tz,
            max_active_runs=self.number(el, "maxActiveRuns", default=1),
            grain=el.get("grain"),
            require=el.get("require", "partition"),
            priority=self.number(el, "priority", default=0),
        )

    def time_zone(self, el, tz: str) -> str:
        """``tz`` if it is an IANA time zone, else a spec error on ``el``'s ``timezone``."""
        try:
            import pendulum

            pendulum.timezone(tz)
        except Exception:
            raise self.error(
                el, f"{tz!r} is not a time zone", attribute="timezone", fix="an IANA name like UTC or Europe/Paris"
            ) from None
        return tz

    def calendar(self) -> Calendar | None:
        """The spec's <calendar>, or the shared calendar file it names (``file=``, relative to the spec)."""
        el = self.find("calendar")
        if el is None:
            return None
        source = el
        if el.get("file"):
            path = self.named_file(el, el.get("file"), "calendar file")
            source = parse_xml(path).getroot()
            if source.tag != "calendar" or len(el):
                raise self.error(
                    el,
                    f"{path.name} must hold one <calendar> and the spec's <calendar file=> nothing else",
                    fix='<calendar timezone="..."><window .../></calendar> in the file',
                )
        zone = self.time_zone(el, el.get("timezone") or source.get("timezone") or "UTC")
        windows = []
        for window in source.iter("window"):
            for attribute in ("start", "end"):
                self.clock(window, attribute)
            days = tuple(self.weekday(window, d) for d in (window.get("days") or "").replace(",", " ").split())
            if window.get("date") and days:
                raise self.error(window, "a window has days= or date=, not both", fix="two windows")
            windows.append(
                Window(
                    start=window.get("start"),
                    end=window.get("end"),
                    days=days,
                    date=window.get("date"),
                    reason=window.get("reason") or "",
                )
            )
        holidays = tuple(h.get("date") for h in source.iter("holiday"))
        return Calendar(timezone=zone, holidays=holidays, windows=tuple(windows))

    def clock(self, el, attribute: str) -> str:
        value = el.get(attribute) or ""
        hour, _, minute = value.partition(":")
        if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60 and len(minute) == 2):
            raise self.error(el, f"{value!r} is not a time of day", attribute=attribute, fix="HH:MM, e.g. 06:00")
        return value

    def weekday(self, el, name: str) -> int:
        if name.lower()[:3] not in DAYS:
            raise self.error(el, f"{name!r} is not a day of the week", attribute="days", fix="mon tue ... sun")
        return DAYS.index(name.lower()[:3])

    def deadline(self) -> Deadline | None:
        el = self.find("deadline")
        if el is None:
            return None
        finish_by, within = el.get("finishBy"), el.get("withinMinutes")
        if (finish_by is None) == (within is None):
            raise self.error(
                el,
                "give either finishBy= or withinMinutes=",
                fix='<deadline finishBy="06:00" timezone="Europe/Amsterdam"/> or <deadline withinMinutes="90"/>',
            )
        if finish_by is not None:
            self.clock(el, "finishBy")
        tz = self.time_zone(el, el.get("timezone") or self.find("schedule").get("timezone", "UTC"))
        minutes = float(within) if within is not None else None
        if minutes is not None and minutes <= 0:
            raise self.error(el, "withinMinutes must be more than 0", attribute="withinMinutes")
        return Deadline(finish_by=finish_by, within_minutes=minutes, timezone=tz)

    def throttle(self) -> Throttle:
        el = self.find("throttle")
        default_pool = dag_id_for(self.name)
        connection = self.find("source").get("connection") or "mssql_default"
        if el is None:
            return Throttle(pool=default_pool, source=connection, connection=connection)
        pool = el.get("pool") or default_pool
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,256}", pool):
            raise self.error(el, f"{pool!r} is not a pool name", attribute="pool", fix="letters, digits, _ . -")
        source = el.get("source") or connection
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,250}", source):
            raise self.error(el, f"{source!r} is not a source name", attribute="source", fix="letters, digits, _ . -")
        weight = self.number(el, "weight", kind=float, default=1.0)
        if not 0 < weight <= 1000:
            raise self.error(el, f"weight {weight:g} is not in (0, 1000]", attribute="weight", fix="a positive share")
        low, initial, high = (self.number(el, a, default=d) for a, d in (("min", 1), ("initial", 2), ("max", 8)))
        if not low <= initial <= high:
            raise self.error(
                el,
                f"the bounds do not hold: min={low} <= initial={initial} <= max={high}",
                fix="choose min <= initial <= max",
            )
        floor = self.number(el, "floor", default=0)
        if floor > high:
            raise self.error(el, f"floor={floor} is above max={high}", attribute="floor", fix="choose floor <= max")
        classes = tuple(el.get("loadClasses").split()) if el.get("loadClasses") else None
        algorithm = el.get("algorithm") or Throttle.algorithm
        return Throttle(
            pool=pool,
            initial=initial,
            min=low,
            max=high,
            load_classes=classes,
            algorithm=algorithm,
            source=source,
            connection=connection,
            weight=weight,
            floor=floor,
        )

    def action(self, element) -> Action:
        """The typed action of ``<retry count= .../>``, ``<throttleDown factor=/>``, ``<skip reason=/>``, ..."""
        kind, fields = ELEMENTS[element.tag]
        return kind(**{fields[name]: _typed(value) for name, value in element.attrib.items()})

    def rules(self) -> tuple[Rule, ...]:
        el = self.find("recovery")
        if el is None:
            return ()
        rules = []
        for rule in el.iter("rule"):
            match_el = self.find("match", rule)
            message = match_el.get("message")
            if message is not None:
                try:
                    re.compile(message)
                except re.error as exc:
                    raise self.error(
                        match_el,
                        f"message {message!r} is not a regular expression: {exc}",
                        attribute="message",
                        fix="escape special characters with \\",
                    ) from None
            match = Match(
                error_class=match_el.get("class"),
                number=self.number(match_el, "number"),
                exit_code=self.number(match_el, "exitCode"),
                message=message,
                step=match_el.get("step"),
                exception=match_el.get("exception"),
            )
            actions = [self.action(action) for action in rule if action.tag != "match"]
            kinds = [a.kind for a in actions]
            if "retry" in kinds and ("fail" in kinds or "skip" in kinds):
                raise self.error(
                    rule,
                    f"actions {kinds} contradict each other (retry with fail/skip)",
                    fix="retry, or fail/skip, optionally with alert and throttleDown",
                )
            if len(set(kinds)) != len(kinds):
                raise self.error(rule, f"an action appears twice in {kinds}", fix="list each action once")
            rules.append(Rule(match=match, actions=tuple(actions), name=rule.get("name"), line=rule.sourceline))
        return tuple(rules)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _as_type(text: str, annotation: str):
    """``text`` as the field's annotated type (``int``, ``float | None``, ``bool``, ``str``)."""
    kinds = {part.strip() for part in annotation.split("|")} - {"None"}
    if kinds == {"bool"}:
        return text == "true"
    if kinds == {"int"}:
        return int(text)
    if kinds & {"float"}:
        return float(text)
    return text


def _typed(value: str):
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


__all__ = ["XSD", "SpecError", "delimiter", "element_line", "load_spec", "parse_xml", "preload", "validate_schema"]
