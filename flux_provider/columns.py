"""A source's result column, as the server describes it: what an export hands on (``ExportResult.columns``)
and a run's manifest keeps, read by the export file's renderers and the Hive staging DDL."""

from __future__ import annotations

from dataclasses import dataclass, field

from flux_provider.records import Record


@dataclass(frozen=True)
class Column(Record):
    """A result column as the server describes it."""

    KIND = "flux.column"
    TAGGED = False  # versioned by the record it is in

    name: str
    type_name: str  # bigint, decimal, nvarchar, datetime2, ... (SQL Server names)
    system_type_name: str  # decimal(38,10), nvarchar(200), ...
    precision: int = 0
    scale: int = 0
    nullable: bool = True
    max_length: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_system_type(
        cls,
        name: str,
        system_type_name: str,
        *,
        nullable: bool = True,
        max_length: int = 0,
        precision: int = 0,
        scale: int = 0,
    ) -> Column:
        base = system_type_name.split("(")[0].strip().lower()
        return cls(name, base, system_type_name.lower(), precision, scale, nullable, max_length)


__all__ = ["Column"]
