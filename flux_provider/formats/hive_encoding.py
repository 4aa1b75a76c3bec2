"""The delimiters, NULL marker and escape of a Hive LazySimpleSerDe text table (no Arrow: DAG files build it
at parse time; :mod:`flux_provider.formats.hive_text` encodes with it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class HiveTextEncoding:
    field: str = "\x01"
    collection: str = "\x02"
    map_key: str = "\x03"
    row: str = "\n"
    null: str = "\\N"
    escape: str = "\\"

    def __post_init__(self):
        delimiters = [self.field, self.collection, self.map_key]
        if any(len(d) != 1 for d in delimiters) or len(set(delimiters)) != 3:
            raise ValueError(f"Hive delimiters must be three distinct single characters, got {delimiters!r}")
        if self.row != "\n":
            raise ValueError("Hive text tables only support '\\n' as the line delimiter")
        if self.escape != "\\":
            raise ValueError("only the backslash escape is supported")

    def to_dict(self) -> dict:
        return asdict(self)

    def escapes(self) -> list[tuple[bytes, bytes]]:
        """(byte, its escape) inside values, the backslash first."""
        delimiters = [d.encode() for d in (self.field, self.collection, self.map_key)]
        return [(b"\\", b"\\\\")] + [(d, b"\\" + d) for d in delimiters] + [(b"\n", b"\\n"), (b"\r", b"\\r")]
