"""A spec's Hive side: tables, partitions, the transform and the refresh."""

from __future__ import annotations

import re
from pathlib import Path

from flux_provider.specs.model import (
    Hive,
    HivePartition,
    Refresh,
)
from flux_provider.specs.spec_reader import SpecReader


class HiveSections(SpecReader):
    """Reads ``<hive>``, its partitions, ``<transform>`` and ``<refresh>``."""

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
