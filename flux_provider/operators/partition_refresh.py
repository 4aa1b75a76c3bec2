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

from flux_provider.errors import ErrorClass, flux_error
from flux_provider.formats import hive_ddl
from flux_provider.handoffs import TransformResult
from flux_provider.hooks.hive_session import HiveSessionHook, classify_hive
from flux_provider.hooks.s3_client import s3_hook
from flux_provider.identifiers import hive_identifier
from flux_provider.operators.base import FluxOperator
from flux_provider.s3_layout import parse_s3_url


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

    # ------------------------------------------------------------------ metastore
    def table_info(self) -> tuple[list[tuple[str, str]], bool]:
        """(partition keys with types, external?) from the metastore."""
        from airflow.providers.apache.hive.hooks.hive import HiveMetastoreHook

        try:
            table = HiveMetastoreHook(metastore_conn_id=self.metastore_conn_id).get_table(self.table, self.database)
        except Exception as exc:  # classified
            raise self._fail(f"cannot read {self.qualified} from the metastore: {exc}", classify_hive(exc)) from exc
        keys = [(k.name, k.type.lower()) for k in table.partitionKeys or []]
        if not keys:
            raise self._fail(f"{self.qualified} is not partitioned; PartitionRefreshOperator needs partitions")
        self._location = getattr(table.sd, "location", None) if table.sd is not None else None
        return keys, (table.tableType or "").upper() == "EXTERNAL_TABLE"

    def list_partitions(self, keys: list[tuple[str, str]]) -> dict[str, dict]:
        """name -> {"values": {...}, "location": ...} of every partition in the metastore."""
        from airflow.providers.apache.hive.hooks.hive import HiveMetastoreHook

        hook = HiveMetastoreHook(metastore_conn_id=self.metastore_conn_id)
        try:
            with hook.metastore as client:
                parts = client.get_partitions(db_name=self.database, tbl_name=self.table, max_parts=-1)
        except Exception as exc:  # classified
            raise self._fail(f"cannot list the partitions of {self.qualified}: {exc}", classify_hive(exc)) from exc
        names = [k for k, _ in keys]
        result = {}
        for part in parts:
            values = dict(zip(names, part.values))
            result[hive_ddl.partition_name(values)] = {"values": values, "location": part.sd.location}
        return result

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
        self, hive: HiveSessionHook, requested: list[dict], existing: dict[str, dict], keys: list[tuple[str, str]]
    ) -> list[str]:
        names = [k for k, _ in keys]
        added = []
        for part in requested:
            values = part["values"]
            if set(values) != set(names):
                raise self._fail(
                    f"partition {values} does not name exactly the partition columns {names} of {self.qualified}"
                )
            values = {k: str(values[k]) for k in names}
            name, location = hive_ddl.partition_name(values), part.get("location")
            clause = hive_ddl.partition_clause(values)
            where = f" LOCATION {hive_ddl.sql_string(location)}" if location else ""
            if name not in existing:
                hive.execute(f"ALTER TABLE {self.qualified} ADD IF NOT EXISTS {clause}{where}")
                added.append(name)
            elif location and existing[name]["location"].rstrip("/") != location.rstrip("/"):
                hive.execute(f"ALTER TABLE {self.qualified} {clause} SET LOCATION {hive_ddl.sql_string(location)}")
                added.append(name)
        return added

    def point_latest(
        self, hive: HiveSessionHook, partitions: dict[str, dict], keys: list[tuple[str, str]]
    ) -> str | None:
        if not self.latest_view or not partitions:
            return None
        newest = max(partitions.values(), key=lambda p: _sort_key(p["values"], keys))
        hive.execute(
            f"CREATE OR REPLACE VIEW `{self.database}`.`{self.latest_view}` AS SELECT * FROM "
            f"{self.qualified} WHERE {hive_ddl.partition_predicate(newest['values'])}",
            what=f"point {self.latest_view} at {hive_ddl.partition_name(newest['values'])}",
        )
        return hive_ddl.partition_name(newest["values"])

    def _reference(self, context) -> str:
        if self.retention_reference:
            return str(self.retention_reference)
        if context.get("flux_day"):  # the day this run loaded: a backfill never drops what it just wrote
            return str(context["flux_day"])
        when = context.get("logical_date") or getattr(context.get("dag_run"), "run_after", None)
        return (when or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d")

    def expired(self, partitions: dict[str, dict], reference: str, keep: str | None) -> list[str]:
        if self.retention_days is None:
            return []
        cutoff = _date(reference, "retention_reference") - dt.timedelta(days=self.retention_days)
        old = []
        for name, part in partitions.items():
            value = part["values"].get(self.retention_column)
            if value is None:
                raise self._fail(
                    f"retention_column {self.retention_column!r} is not a partition column of {self.qualified}"
                )
            if name != keep and _date(value, f"partition {name}") < cutoff:
                old.append(name)
        return sorted(old)

    def drop(self, hive: HiveSessionHook, partitions: dict[str, dict], names: list[str], external: bool) -> None:
        for name in names:
            hive.execute(
                f"ALTER TABLE {self.qualified} DROP IF EXISTS "
                f"{hive_ddl.partition_clause(partitions[name]['values'])}"
                + (" PURGE" if self.purge and not external else "")
            )
            if self.purge and external:
                self._delete_files(partitions[name]["location"])

    def _delete_files(self, location: str) -> None:
        if not location.startswith(("s3://", "s3a://")):
            self.log.warning("data set %s: not deleting %s (not on S3)", self.dataset, location)
            return
        bucket, prefix = parse_s3_url(location)
        prefix = prefix.rstrip("/") + "/"
        hook = s3_hook(self.aws_conn_id)
        keys = hook.list_keys(bucket_name=bucket, prefix=prefix)
        if keys:
            hook.delete_objects(bucket=bucket, keys=keys)
        self.log.info("data set %s: deleted %d files under %s", self.dataset, len(keys), location)

    def lineage(self, complete: bool) -> tuple[list, list] | None:
        """The target table -> its latest view (what a refresh publishes for readers)."""
        from flux_provider.operators import lineage

        if not self.latest_view:
            return None
        hive = lineage.hive_namespace(self.hiveserver2_conn_id)
        return [lineage.hive_dataset(hive, f"{self.database}.{self.table}")], [
            lineage.hive_dataset(hive, f"{self.database}.{self.latest_view}")
        ]

    def run(self, context) -> dict:
        started = time.monotonic()
        began = dt.datetime.now(dt.timezone.utc)
        requested = self._requested(context)
        keys, external = self.table_info()
        self._session = hive = HiveSessionHook(self.hiveserver2_conn_id, dataset=self.dataset, step="refresh")
        try:
            if self.repair:
                hive.execute(f"MSCK REPAIR TABLE {self.qualified}")
            existing = self.list_partitions(keys)
            added = self.add_partitions(hive, requested, existing, keys)
            partitions = self.list_partitions(keys) if added else existing
            latest = self.point_latest(hive, partitions, keys)
            dropped = self.expired(partitions, self._reference(context), latest)
            self.drop(hive, partitions, dropped, external)
            touched = sorted(
                {hive_ddl.partition_name({k: str(p["values"][k]) for k, _ in keys}) for p in requested} - set(dropped)
            )
            if self.analyze:
                for name in touched:
                    hive.execute(
                        f"ANALYZE TABLE {self.qualified} "
                        f"{hive_ddl.partition_clause(partitions[name]['values'])} COMPUTE STATISTICS"
                    )
            landed = self.prune_landing(context, hive, self._transformed_run(context))
        finally:
            statements = hive.statements
            hive.close()
            self._session = None
        # staging files of killed INSERTs under the table, written before this try: no later run removes them
        cleaned = self.clean_insert_leftovers(context, self.aws_conn_id, self._location, began)
        seconds = time.monotonic() - started
        self.log.info(
            "data set %s: %s: %d partitions (%d added or moved, %d dropped), latest %s, %.1fs",
            self.dataset,
            self.qualified,
            len(partitions) - len(dropped),
            len(added),
            len(dropped),
            latest,
            seconds,
        )
        return {
            "dataset": self.dataset,
            "table": self.qualified,
            "partitions": len(partitions) - len(dropped),
            "added": added,
            "dropped": dropped,
            "touched": touched,
            "latest": latest,
            "latest_view": f"`{self.database}`.`{self.latest_view}`" if self.latest_view else None,
            "statements": statements,
            "leftovers_removed": cleaned,
            "landing": landed.to_json() if landed else None,
            "seconds": round(seconds, 3),
        }

    def on_kill(self) -> None:
        if self._session is not None:
            self._session.cancel()


def _sort_key(values: dict, keys: list[tuple[str, str]]) -> tuple:
    numeric = ("tinyint", "smallint", "int", "bigint", "decimal", "double", "float")
    out = []
    for name, type_name in keys:
        value = values[name]
        if type_name.split("(")[0] in numeric:
            try:
                out.append((0, float(value), ""))
                continue
            except ValueError:
                pass
        out.append((1, 0.0, str(value)))
    return tuple(out)


def _date(value: str, what: str) -> dt.date:
    text = str(value).strip()[:10]
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text if fmt == "%Y-%m-%d" else text[:8], fmt).date()
        except ValueError:
            continue
    raise flux_error(
        f"{what}: {value!r} is not a date (YYYY-MM-DD or YYYYMMDD)", error_class=ErrorClass.CONFIG, step="refresh"
    )


__all__ = ["PartitionRefreshOperator"]
