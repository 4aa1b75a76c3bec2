"""PartitionRefreshOperator: step 4, register partitions, point "latest" at the newest data, apply retention.

Example::

    from flux_provider.operators.partition_refresh import PartitionRefreshOperator

    refresh = PartitionRefreshOperator(
        task_id="refresh",
        dataset="viewing_sessions",
        database="media",
        table="viewing_sessions_daily",
        transform_task_id="transform",     # partitions the transform wrote (default)
        latest_view="viewing_sessions_latest",
        retention_days=400, retention_column="day",   # drop day partitions older than ds - 400 days
        purge=False,                       # True: also delete a dropped external partition's files
        analyze=True,                      # ANALYZE TABLE ... PARTITION (...) COMPUTE STATISTICS
    )

Steps (all idempotent; a rerun changes nothing more):

1. ``MSCK REPAIR TABLE`` when ``repair=True``; then every partition in
   ``partitions`` (default: those the transform's XCom lists) is added if
   missing, at its ``location`` when one is given (``SET LOCATION`` if it moved);
2. ``latest_view`` is replaced in one metastore call (``CREATE OR REPLACE
   VIEW ... WHERE <newest partition>``): readers see the old or the new
   partition, never a mix. The newest partition is the greatest by partition
   values (numbers compared as numbers);
3. partitions whose ``retention_column`` date is more than ``retention_days``
   before ``retention_reference`` (default ``{{ flux_day }}``, the day the run loaded) are dropped, the newest
   one never; with ``purge=True`` their files are deleted too (for external
   tables Hive keeps them);
4. optional statistics for the partitions touched.

Partitions and their locations are read from the metastore (``HiveMetastoreHook``),
statements run through ``HiveServer2Hook``. XCom ``return_value``: partitions
added, dropped, latest, durations.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence

from flux_provider.formats import hive_ddl, hive_refresh
from flux_provider.handoffs import RefreshResult, TransformResult
from flux_provider.hooks.hive_session import HiveSessionHook
from flux_provider.hooks.metastore import HivePartition, HiveTable, MetastoreReader
from flux_provider.hooks.s3_client import delete_under
from flux_provider.identifiers import hive_identifier
from flux_provider.operators.base import FluxOperator


class PartitionRefreshOperator(FluxOperator):
    """Refresh a Hive table's partitions, swap its "latest" view and drop partitions past retention.

    :param dataset: the data set's name.
    :param database: Hive database (validated). :param table: the partitioned table (validated).
    :param partitions: ``[{"values": {"day": "2024-01-01"}, "location": "s3a://..."}]`` (templated;
        ``location`` optional); default: the ``partitions`` of ``transform_task_id``'s XCom.
    :param repair: run ``MSCK REPAIR TABLE`` first (partition directories written by other tools).
    :param latest_view: view to point at the newest partition (validated), or None.
    :param retention_days: drop partitions whose ``retention_column`` is older than
        ``retention_reference - retention_days``.
    :param retention_column: the partition column (a date ``YYYY-MM-DD`` or ``YYYYMMDD``) retention reads.
    :param retention_reference: the day retention counts back from (templated; default: the run's
        ``flux_day``, so a backfill never drops what it just wrote; outside a flux run the logical date,
        else the run's start).
    :param purge: delete the files of dropped partitions too.
    :param analyze: compute statistics for the partitions added or refreshed.
    :param landing: a :class:`~flux_provider.retention.Landing`: the landed runs its rule removes after the
        refresh (the spec's factory gives it to the DAG's last task).
    """

    template_fields: Sequence[str] = ("partitions", "retention_reference")
    ui_color = "#d2e4f0"
    step = "refresh"

    def __init__(
        self,
        *,
        dataset: str,
        database: str,
        table: str,
        partitions: list[dict] | str | None = None,
        transform_task_id: str | None = "transform",
        repair: bool = False,
        latest_view: str | None = None,
        retention_days: int | None = None,
        retention_column: str | None = None,
        retention_reference: str | None = None,
        purge: bool = False,
        analyze: bool = False,
        hiveserver2_conn_id: str = "hiveserver2_default",
        metastore_conn_id: str = "metastore_default",
        aws_conn_id: str | None = "aws_default",
        landing=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dataset = dataset
        self.database = hive_identifier(database, "database", dataset=dataset)
        self.table = hive_identifier(table, "table", dataset=dataset)
        self.latest_view = hive_identifier(latest_view, "latest view", dataset=dataset) if latest_view else None
        if (retention_days is None) != (retention_column is None):
            raise self._fail("retention needs both retention_days and retention_column")
        if retention_days is not None and retention_days < 0:
            raise self._fail(f"retention_days {retention_days} is negative")
        self.retention_days = retention_days
        self.retention_column = (
            hive_identifier(retention_column, "retention column", dataset=dataset) if retention_column else None
        )
        self.partitions, self.transform_task_id, self.repair = partitions, transform_task_id, repair
        self.retention_reference, self.purge, self.analyze = retention_reference, purge, analyze
        self.hiveserver2_conn_id, self.metastore_conn_id = hiveserver2_conn_id, metastore_conn_id
        self.aws_conn_id = aws_conn_id
        self.landing = landing  # flux_provider.retention.Landing: pruned after the refresh
        self._session: HiveSessionHook | None = None

    @property
    def qualified(self) -> str:
        return f"`{self.database}`.`{self.table}`"

    # ------------------------------------------------------------------ steps
    def _transformed_run(self, context) -> str | None:
        """The landed run the transform of this DAG run read (its ``flux_run`` partition)."""
        if not self.transform_task_id:
            return None
        try:
            return TransformResult.from_json(context["ti"].xcom_pull(task_ids=self.transform_task_id)).run
        except (TypeError, ValueError, AttributeError):
            return None

    def _requested(self, context) -> list[dict]:
        parts = self.partitions
        if parts is None and self.transform_task_id:
            pushed = context["ti"].xcom_pull(task_ids=self.transform_task_id)
            try:
                transform = TransformResult.from_json(pushed)
            except (TypeError, ValueError):
                transform = None
            parts = [p.to_json() for p in transform.partitions] if transform is not None else None
        if isinstance(parts, str):
            parts = json.loads(parts)
        parts = parts or []
        for part in parts:
            if not isinstance(part, dict) or not isinstance(part.get("values"), dict):
                raise self._fail(
                    f"a partition must be {{'values': {{column: value}}, 'location': optional}}, got {part!r}"
                )
        return parts

    def add_partitions(
        self, hive: HiveSessionHook, requested: list[dict], existing: dict[str, HivePartition], table: HiveTable
    ) -> list[str]:
        """Add each requested partition that is missing, move one whose location changed; their names."""
        names, added = table.key_names, []
        for part in requested:
            if set(part["values"]) != set(names):
                raise self._fail(
                    f"partition {part['values']} does not name exactly the partition columns {names} of "
                    f"{self.qualified}"
                )
            values = {k: str(part["values"][k]) for k in names}
            name, location = hive_ddl.partition_name(values), part.get("location")
            if name not in existing:
                hive.execute(hive_refresh.add_partition(self.qualified, values, location))
                added.append(name)
            elif location and existing[name].location.rstrip("/") != location.rstrip("/"):
                hive.execute(hive_refresh.move_partition(self.qualified, values, location))
                added.append(name)
        return added

    def point_latest(self, hive: HiveSessionHook, partitions: dict[str, HivePartition], table: HiveTable):
        """Point ``latest_view`` at the newest partition; its name (None: no view, or no partition)."""
        if not self.latest_view or not partitions:
            return None
        newest = max(partitions.values(), key=lambda p: hive_refresh.sort_key(p.values, table.keys))
        hive.execute(
            hive_refresh.point_view(f"`{self.database}`.`{self.latest_view}`", self.qualified, newest.values),
            what=f"point {self.latest_view} at {newest.name}",
        )
        return newest.name

    def _reference(self, context) -> str:
        if self.retention_reference:
            return str(self.retention_reference)
        if context.get("flux_day"):  # the day this run loaded: a backfill never drops what it just wrote
            return str(context["flux_day"])
        when = context.get("logical_date") or getattr(context.get("dag_run"), "run_after", None)
        return (when or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d")

    def expired(self, partitions: dict[str, HivePartition], reference: str, keep: str | None) -> list[str]:
        if self.retention_days is None:
            return []
        try:
            values = {name: p.values for name, p in partitions.items()}
            return hive_refresh.expired(values, self.retention_column, reference, self.retention_days, keep)
        except KeyError:
            raise self._fail(
                f"retention_column {self.retention_column!r} is not a partition column of {self.qualified}"
            ) from None

    def drop(self, hive: HiveSessionHook, partitions: dict[str, HivePartition], names: list[str], table) -> None:
        for name in names:
            purge = self.purge and not table.external
            hive.execute(hive_refresh.drop_partition(self.qualified, partitions[name].values, purge=purge))
            if self.purge and table.external:
                where = partitions[name].location
                deleted = delete_under(self.aws_conn_id, where)  # None: not on S3, left alone (it says so)
                if deleted is not None:
                    self.log.info("data set %s: deleted %d files under %s", self.dataset, deleted, where)

    def lineage(self, complete: bool) -> tuple[list, list] | None:
        """The target table -> its latest view (what a refresh publishes for readers)."""
        from flux_provider.operators import lineage

        if not self.latest_view:
            return None
        hive = lineage.hive_namespace(self.hiveserver2_conn_id)
        return [lineage.hive_dataset(hive, f"{self.database}.{self.table}")], [
            lineage.hive_dataset(hive, f"{self.database}.{self.latest_view}")
        ]

    def work(self, context) -> dict:
        started = time.monotonic()
        began = dt.datetime.now(dt.timezone.utc)
        requested = self._requested(context)
        metastore = MetastoreReader(self.metastore_conn_id, self.database, self.table, dataset=self.dataset)
        table = metastore.table_info()
        self._session = hive = HiveSessionHook(self.hiveserver2_conn_id, dataset=self.dataset, step="refresh")
        try:
            if self.repair:
                hive.execute(hive_refresh.repair(self.qualified))
            existing = metastore.partitions(table)
            added = self.add_partitions(hive, requested, existing, table)
            partitions = metastore.partitions(table) if added else existing
            latest = self.point_latest(hive, partitions, table)
            dropped = self.expired(partitions, self._reference(context), latest)
            self.drop(hive, partitions, dropped, table)
            asked = {hive_ddl.partition_name({k: str(p["values"][k]) for k in table.key_names}) for p in requested}
            touched = sorted(asked - set(dropped))
            for name in touched if self.analyze else ():
                hive.execute(hive_refresh.analyze(self.qualified, partitions[name].values))
            landed = self.prune_landing(context, hive, self._transformed_run(context))
        finally:
            statements = hive.statements
            hive.close()
            self._session = None
        # staging files of killed INSERTs under the table, written before this try: no later run removes them
        cleaned = self.clean_insert_leftovers(context, self.aws_conn_id, table.location, began)
        seconds = time.monotonic() - started
        self.log.info(
            "data set %s: %s: %d partitions (%d added or moved, %d dropped), latest %s, %.1fs",
            *(self.dataset, self.qualified, len(partitions) - len(dropped), len(added), len(dropped), latest, seconds),
        )
        return RefreshResult(
            dataset=self.dataset,
            table=self.qualified,
            partitions=len(partitions) - len(dropped),
            added=added,
            dropped=dropped,
            touched=touched,
            latest=latest,
            latest_view=f"`{self.database}`.`{self.latest_view}`" if self.latest_view else None,
            statements=statements,
            leftovers_removed=cleaned,
            landing=landed,
            seconds=round(seconds, 3),
        ).to_json()

    def on_kill(self) -> None:
        if self._session is not None:
            self._session.cancel()


__all__ = ["PartitionRefreshOperator"]
