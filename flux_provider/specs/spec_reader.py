"""The spec reader's shared steps: find an element, read an attribute as an identifier, a Hive type, a flag
or a number, and make a :class:`SpecError` that names the file, line, element and fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flux_provider.error_taxonomy import FluxError
from flux_provider.identifiers import hive_identifier, hive_type
from flux_provider.specs.spec_error import SpecError


class SpecReader:
    """One spec file's root and the helpers every section reader uses."""

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


def typed_value(value: str):
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value
