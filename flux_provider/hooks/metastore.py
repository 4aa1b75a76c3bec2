"""What the Hive metastore says about a table: its partition keys, kind and location, and its partitions.

Read through the Hive provider's ``HiveMetastoreHook``; a failure is a classified
:class:`~flux_provider.error_taxonomy.FluxError` naming the table (a lost connection heals, a missing table does not).
"""

from __future__ import annotations

from dataclasses import dataclass

from flux_provider.errors import ErrorClass, flux_error
from flux_provider.formats.hive_ddl import partition_name
from flux_provider.hooks.hive_session import classify_hive


@dataclass(frozen=True)
class HiveTable:
    """A partitioned table as the metastore holds it."""

    keys: tuple[tuple[str, str], ...]  # (partition column, Hive type lower-cased), in order
    external: bool
    location: str | None

    @property
    def key_names(self) -> list[str]:
        return [k for k, _ in self.keys]


@dataclass(frozen=True)
class HivePartition:
    """One partition of a table: its values by partition column, and where its files are."""

    values: dict[str, str]
    location: str

    @property
    def name(self) -> str:
        return partition_name(self.values)


class MetastoreReader:
    """Reads one table of one data set (``dataset`` and ``step`` name it in errors)."""

    def __init__(self, conn_id: str, database: str, table: str, *, dataset: str | None, step: str = "refresh"):
        self.conn_id, self.database, self.table = conn_id, database, table
        self.dataset, self.step = dataset, step

    @property
    def qualified(self) -> str:
        return f"`{self.database}`.`{self.table}`"

    def _hook(self):
        from airflow.providers.apache.hive.hooks.hive import HiveMetastoreHook

        return HiveMetastoreHook(metastore_conn_id=self.conn_id)

    def _fail(self, message: str, error_class: ErrorClass = ErrorClass.CONFIG):
        return flux_error(message, error_class=error_class, dataset=self.dataset, step=self.step)

    def table_info(self) -> HiveTable:
        """The table's partition keys (a table without any is a configuration error), kind and location."""
        try:
            table = self._hook().get_table(self.table, self.database)
        except Exception as exc:  # classified
            raise self._fail(f"cannot read {self.qualified} from the metastore: {exc}", classify_hive(exc)) from exc
        keys = tuple((k.name, k.type.lower()) for k in table.partitionKeys or [])
        if not keys:
            raise self._fail(f"{self.qualified} is not partitioned; PartitionRefreshOperator needs partitions")
        return HiveTable(
            keys=keys,
            external=(table.tableType or "").upper() == "EXTERNAL_TABLE",
            location=getattr(table.sd, "location", None) if table.sd is not None else None,
        )

    def partitions(self, table: HiveTable) -> dict[str, HivePartition]:
        """Every partition of the table, by name (``day=2024-01-01``)."""
        try:
            with self._hook().metastore as client:
                found = client.get_partitions(db_name=self.database, tbl_name=self.table, max_parts=-1)
        except Exception as exc:  # classified
            raise self._fail(f"cannot list the partitions of {self.qualified}: {exc}", classify_hive(exc)) from exc
        parts = (HivePartition(dict(zip(table.key_names, p.values)), p.sd.location) for p in found)
        return {p.name: p for p in parts}


__all__ = ["HivePartition", "HiveTable", "MetastoreReader"]
