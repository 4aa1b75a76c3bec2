"""The base of every typed record that crosses a step (an XCom) or is stored (an S3 JSON object).

A record is a frozen dataclass that derives from :class:`Record`. It has one JSON
form: :meth:`Record.to_json` writes it and :meth:`Record.from_json` reads it back.

* **Versioned.** The JSON carries ``VERSION_KEY: "<KIND>/<VERSION>"``. A reader
  refuses a record of another kind, and one written by a newer major version,
  with a message that says which. A record without the key (written before the
  key existed) is read as version 1.
* **Forward compatible.** Keys a record does not know are kept in ``extra`` and
  written back unchanged, so an older reader never drops what a newer writer
  added.
* **Nested.** Fields named in ``NESTED`` hold another record (or a list of them)
  and are converted both ways. A record that only ever lives inside another
  (``TAGGED = False``, e.g. a manifest's chunks) carries no tag of its own: the
  outer record's tag versions it.
* **Renamed.** ``JSON_NAMES`` maps a field to its JSON key where the key is not a
  Python name (``attempt`` is stored as ``try``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """A JSON value that is not the record it should be: another kind, a newer version, not an object."""


class Record:
    """``to_json`` / ``from_json`` for the frozen dataclasses that derive from it (see the module)."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1
    VERSION_KEY: ClassVar[str] = "record"
    NESTED: ClassVar[dict[str, type[Record]]] = {}
    JSON_NAMES: ClassVar[dict[str, str]] = {}
    TAGGED: ClassVar[bool] = True

    extra: dict

    @classmethod
    def version_tag(cls) -> str:
        return f"{cls.KIND}/{cls.VERSION}"

    def to_json(self) -> dict:
        """The JSON-ready dict: the version tag, every field under its JSON name, then ``extra``."""
        out: dict[str, Any] = {self.VERSION_KEY: self.version_tag()} if self.TAGGED else {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if isinstance(value, Record):
                value = value.to_json()
            elif isinstance(value, (list, tuple)) and f.name in self.NESTED:
                value = [v.to_json() if isinstance(v, Record) else v for v in value]
            out[self.JSON_NAMES.get(f.name, f.name)] = value
        return {**out, **self.extra}

    @classmethod
    def from_json(cls: type[R], value: Any) -> R | None:
        """The record in ``value`` (its dict, or that dict as JSON text); None for None."""
        if value is None:
            return None
        if isinstance(value, (str, bytes)):
            value = json.loads(value)
        if not isinstance(value, dict):
            raise RecordError(f"{cls.__name__}: expected a JSON object, got {type(value).__name__}")
        cls._check_version(value.get(cls.VERSION_KEY))
        keys, required = _shape(cls)
        known, extra = {}, {}
        for key, item in value.items():
            if key == cls.VERSION_KEY:
                continue
            name = keys.get(key)
            if name is not None:
                known[name] = cls._nested(name, item)
            else:
                extra[key] = item
        missing = [name for name in required if name not in known]
        if missing:
            raise RecordError(f"{cls.__name__}: this JSON lacks {', '.join(missing)}, which a {cls.KIND} must have")
        return cls(**known, extra=extra)

    @classmethod
    def _check_version(cls, tag: Any) -> None:
        if tag is None:
            return
        kind, _, version = str(tag).rpartition("/")
        if kind != cls.KIND or not version.isdigit():
            raise RecordError(f"{cls.__name__}: this JSON is a {tag!r}, not a {cls.version_tag()!r}")
        if int(version) > cls.VERSION:
            raise RecordError(
                f"{cls.__name__}: written as {tag!r} by a newer flux_provider; this one reads up to "
                f"{cls.version_tag()!r}. Upgrade the provider where this runs"
            )

    @classmethod
    def _nested(cls, name: str, item: Any) -> Any:
        kind = cls.NESTED.get(name)
        if kind is None or item is None:
            return item
        if isinstance(item, list):
            return [kind.from_json(v) if isinstance(v, dict) else v for v in item]
        return kind.from_json(item) if isinstance(item, dict) else item


@functools.cache
def _shape(cls: type[Record]) -> tuple[dict[str, str], tuple[str, ...]]:
    """A record class's JSON names -> field names, and the fields it must have (read once per class)."""
    fields = [f for f in dataclasses.fields(cls) if f.name != "extra"]
    keys = {cls.JSON_NAMES.get(f.name, f.name): f.name for f in fields}
    required = tuple(
        f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    return keys, required


__all__ = ["Record", "RecordError"]
