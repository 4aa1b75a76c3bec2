"""Build a :class:`~flux_provider.specs.model.DatasetSpec` from a spec file, checking what a schema cannot.

The file is read and validated by :mod:`flux_provider.specs.spec_xml` (XML
safety, the XSD); this module builds the model and checks identifiers, types,
queries, splits and rules. Errors are :class:`SpecError` with the file, line,
element, the bad value and how to fix it.
"""

from __future__ import annotations

import re
from pathlib import Path

from flux_provider.specs.model import DatasetSpec
from flux_provider.specs.read_hive import HiveSections
from flux_provider.specs.read_schedule import ScheduleSections
from flux_provider.specs.read_source import SourceSections, delimiter
from flux_provider.specs.spec_error import SpecError
from flux_provider.specs.spec_xml import XSD, element_line, parse_xml, preload, validate_schema


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


class _Builder(SourceSections, HiveSections, ScheduleSections):
    """The whole spec: each section's reader, then the checks across sections."""

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


__all__ = ["XSD", "SpecError", "delimiter", "element_line", "load_spec", "parse_xml", "preload", "validate_schema"]
