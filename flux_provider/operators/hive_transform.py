"""HiveTransformOperator: step 3, the published upload -> a staging view -> INSERT OVERWRITE into the target.

Example::

    from flux_provider.operators.hive_transform import HiveTransformOperator

    transform = HiveTransformOperator(
        task_id="transform",
        dataset="viewing_sessions",
        upload_task_id="upload",                 # the S3ChunkUploadOperator whose run is read
        database="media",
        staging_table="viewing_sessions_staging",
        target_table="viewing_sessions_daily",
        sql="transforms/viewing_sessions.hql",   # or an inline SELECT; Jinja: {{ staging }}, {{ ds }}, ...
        partition={"day": "{{ ds }}"},           # static; or dynamic_partitions=["day"]
        expect_rows="staging",                   # 1:1 transform: target rows == staging rows
    )

What it does, in order, through ``HiveServer2Hook`` (one session):

1. reads the run's manifest from S3 (the upload's XCom says where), checks
   the run's objects against it (every chunk there with its size and CRC32,
   no other file Hive would read: a try Airflow gave up may have kept
   writing) and makes sure ``<staging_table>_raw`` (external text table, one ``flux_run``
   partition per run) and the view ``<staging_table>`` exist with exact types
   (see :mod:`flux_provider.formats.hive_ddl`), the delimiters, escape and NULL
   format the manifest records; gzip chunks are read as such by extension;
2. creates the target if ``target_columns`` are given, then counts in one
   statement the view's rows and the transform's rows per target partition.
   The view's count must equal the manifest's rows, and the transform's must
   meet the expectations (``expect_rows``, ``min_rows``), else it fails before
   touching the target;
3. ``INSERT OVERWRITE TABLE target PARTITION (...) <sql>`` (dynamic partition
   mode set in the session when needed), then counts the target's rows in the
   written partitions (one grouped statement) and fails if they differ from
   step 2.

A failure at any point leaves the target as it was (Hive and Spark write an
INSERT OVERWRITE to a temporary location and move it in at the end). XCom
``return_value``: rows per stage, partitions written with their rows, the
statements run and their durations.

In the SQL, ``{{ staging }}`` is the staging view, ``{{ target }}`` the target
table, ``{{ run }}`` the run's ``flux_run`` partition; all Airflow macros work.
A dynamic partition column must be the last column(s) of the SELECT, named
like the partition column.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Sequence

from flux_provider.errors import ErrorClass, FluxError
from flux_provider.formats import hive_ddl, hive_dml
from flux_provider.handoffs import TransformResult, UploadResult, WrittenPartition
from flux_provider.hooks import hive_staging
from flux_provider.hooks.hive_session import HiveSessionHook
from flux_provider.hooks.run_integrity import changed_since_published
from flux_provider.hooks.run_store import RunStore
from flux_provider.hooks.s3_client import s3_client
from flux_provider.hooks.s3_errors import classify_s3
from flux_provider.identifiers import hive_identifier, hive_type
from flux_provider.operators.base import FluxOperator
from flux_provider.run_records import Manifest
from flux_provider.s3_layout import DatasetLayout


class HiveTransformOperator(FluxOperator):
    """Read a published upload through a staging view and INSERT OVERWRITE the transform into a Hive table.

    :param dataset: the data set's name (messages, XCom).
    :param database: Hive database of the target (validated identifier).
    :param target_table: the table the transform writes (validated).
    :param staging_table: name of the staging view; the raw table is ``<staging_table>_raw``.
    :param staging_database: database of the staging objects (default ``database``).
    :param sql: the transform's SELECT (templated; a ``.sql``/``.hql`` path is read as a template).
    :param partition: static partition values of the target, e.g. ``{"day": "{{ ds }}"}`` (templated).
    :param dynamic_partitions: target partition columns filled from the SELECT's last columns.
    :param target_columns: ``{"name": "HIVE TYPE"}``: create the target if it does not exist,
        partitioned by ``partition_types`` (``{"day": "STRING"}``), ``STORED AS target_format``.
    :param expect_rows: ``"staging"`` (target rows == staging rows) or an exact number.
    :param min_rows: fail if the transform yields fewer rows.
    :param upload_task_id: task whose XCom describes the published run (default ``upload``).
    :param upload: that XCom dict itself (templated), instead of ``upload_task_id``.
    :param timestamp_precision: fractional second digits the Hive engine keeps (Spark 6, Hive 9).
    :param create_database: create missing databases (default: a missing database is an error).
    :param landing: a :class:`~flux_provider.retention.Landing`: the landed runs its rule removes once the
        load is done (the spec's factory gives it to the DAG's last task).
    """

    template_fields: Sequence[str] = ("sql", "partition", "upload")
    template_ext: Sequence[str] = (".sql", ".hql")
    template_fields_renderers = {"sql": "sql"}
    ui_color = "#d8f0d2"
    step = "transform"

    def __init__(
        self,
        *,
        dataset: str,
        database: str,
        target_table: str,
        staging_table: str,
        sql: str,
        staging_database: str | None = None,
        partition: dict | None = None,
        dynamic_partitions: Sequence[str] = (),
        target_columns: dict[str, str] | None = None,
        partition_types: dict[str, str] | None = None,
        target_format: str = "PARQUET",
        expect_rows: str | int | None = None,
        min_rows: int | None = None,
        upload_task_id: str | None = "upload",
        upload: dict | str | None = None,
        hiveserver2_conn_id: str = "hiveserver2_default",
        aws_conn_id: str | None = "aws_default",
        timestamp_precision: int = 6,
        create_database: bool = False,
        landing=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.landing = landing
        self.dataset = dataset
        self.database = hive_identifier(database, "database", dataset=dataset)
        self.staging_database = hive_identifier(staging_database or database, "staging database", dataset=dataset)
        self.target_table = hive_identifier(target_table, "target table", dataset=dataset)
        self.staging_table = hive_identifier(staging_table, "staging table", dataset=dataset)
        self.sql = sql
        self._set_partitions(partition, dynamic_partitions, target_columns, partition_types)
        if target_format.upper() not in ("PARQUET", "ORC", "TEXTFILE", "AVRO"):
            raise self._fail(f"target_format {target_format!r} is not PARQUET, ORC, TEXTFILE or AVRO")
        self.target_format = target_format.upper()
        if expect_rows not in (None, "staging") and not isinstance(expect_rows, int):
            raise self._fail(f"expect_rows {expect_rows!r} is not 'staging' or a number of rows")
        self.expect_rows, self.min_rows = expect_rows, min_rows
        self.upload_task_id, self.upload = upload_task_id, upload
        self.hiveserver2_conn_id, self.aws_conn_id = hiveserver2_conn_id, aws_conn_id
        self.timestamp_precision, self.create_database = timestamp_precision, create_database
        self._session: HiveSessionHook | None = None
        self._run_view: str | None = None

    def _set_partitions(self, partition, dynamic_partitions, target_columns, partition_types) -> None:
        dataset = self.dataset
        self.partition = dict(partition or {})
        self.dynamic_partitions = [
            hive_identifier(c, "dynamic partition column", dataset=dataset) for c in dynamic_partitions
        ]
        for key in self.partition:
            hive_identifier(key, "partition column", dataset=dataset)
        both = set(self.partition) & set(self.dynamic_partitions)
        if both:
            raise self._fail(
                f"partition columns {sorted(both)} are both static and dynamic; list each in one of partition= "
                "or dynamic_partitions="
            )
        self.target_columns = None if target_columns is None else self._typed(target_columns, "target column")
        self.partition_types = self._typed(partition_types or {}, "partition column")
        every = set(self.partition) | set(self.dynamic_partitions)
        if self.target_columns is not None and set(self.partition_types) != every:
            raise self._fail(f"partition_types must give a type for each partition column {sorted(every)}")

    # ------------------------------------------------------------------ names
    @property
    def staging(self) -> str:
        """The view the transform reads: this run's own (several runs of a data set may transform at once)."""
        return f"`{self.staging_database}`.`{self._run_view or self.staging_table}`"

    @property
    def staging_latest(self) -> str:
        """``<staging_table>``: the last run transformed, for people to query."""
        return f"`{self.staging_database}`.`{self.staging_table}`"

    @property
    def staging_raw(self) -> str:
        return f"`{self.staging_database}`.`{self.staging_table}_raw`"

    @property
    def target(self) -> str:
        return f"`{self.database}`.`{self.target_table}`"

    def _typed(self, columns: dict[str, str], what: str) -> dict[str, str]:
        for name, column_type in columns.items():
            hive_identifier(name, what, dataset=self.dataset)
            hive_type(column_type, f"{what} {name!r}", dataset=self.dataset)
        return dict(columns)

    def render_template_fields(self, context, jinja_env=None) -> None:
        run_id = context.get("run_id") if hasattr(context, "get") else None
        if run_id:
            digest = hashlib.sha1(str(run_id).encode()).hexdigest()[:10]
            self._run_view = f"{self.staging_table[:100]}_run_{digest}"
        context["staging"], context["target"] = self.staging, self.target
        super().render_template_fields(context, jinja_env)

    # ------------------------------------------------------------------ inputs
    def _upload_info(self, context) -> UploadResult:
        info = self.upload
        if info is None and self.upload_task_id:
            info = context["ti"].xcom_pull(task_ids=self.upload_task_id)
        why = ""
        try:
            upload = UploadResult.from_json(info)
        except (TypeError, ValueError) as exc:  # RecordError names the facts it lacks
            upload, why = None, f" ({exc})"
        if upload is None or not (upload.bucket and upload.manifest):
            raise self._fail(
                f"no published upload to read: task {self.upload_task_id!r} pushed {info!r}{why}; "
                "run the upload step first or pass upload= (an upload's XCom)"
            )
        return upload

    def _manifest(self, upload: UploadResult) -> Manifest:
        client, where = s3_client(self.aws_conn_id), f"s3://{upload.bucket}/{upload.manifest}"
        try:
            store = RunStore(client, DatasetLayout(upload.bucket, ""), dataset=self.dataset)
            manifest = store.manifest_at(upload.manifest)
            problems = changed_since_published(client, manifest) if manifest else []
        except Exception as exc:  # classified
            raise self._fail(f"cannot read the published run {where}: {exc}", classify_s3(exc)) from exc
        if manifest is None:
            raise self._fail(
                f"the manifest {where} that the upload published is gone; clear the upload task to upload the "
                "run again",
                ErrorClass.MISSING_OBJECT,
            )
        if problems:
            raise self._fail(
                f"the run {manifest.location} changed after it was published: {'; '.join(problems[:5])}"
                + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
                + ". A try Airflow gave up (a zombie) may have kept writing; nothing was read. Clear the upload "
                "task to upload the run again (a new generation)",
                ErrorClass.DATA,
            )
        return manifest

    # ------------------------------------------------------------------ steps
    def ensure_staging(self, hive: HiveSessionHook, manifest: Manifest) -> tuple[str, list[hive_ddl.StagingColumn]]:
        """Create/refresh the raw table, the run's partition and the view. Returns (run partition, columns)."""
        columns = hive_staging.staging_columns(manifest, self.dataset, timestamp_precision=self.timestamp_precision)
        staging = hive_staging.Staging(
            self.dataset, self.staging_database, self.staging_raw, self.staging, self.staging_latest
        )
        databases = tuple(dict.fromkeys((self.database, self.staging_database))) if self.create_database else ()
        return hive_staging.ensure_staging(hive, staging, manifest, columns, databases=databases), columns

    def ensure_target(self, hive: HiveSessionHook) -> None:
        if self.target_columns is not None:
            hive.execute(
                hive_dml.create_target(self.target, self.target_columns, self.partition_types, self.target_format)
            )

    @property
    def written_to(self) -> hive_dml.Target:
        return hive_dml.Target(self.target, self.partition, tuple(self.dynamic_partitions))

    def count_rows(self, hive: HiveSessionHook) -> tuple[int, dict[str, int]]:
        """The staging view's rows, and the rows the transform yields per written partition
        (``day=2024-01-01/...``; ``""`` if unpartitioned), in one statement."""
        rows = hive.execute(
            hive_dml.count_rows(self.staging, self.sql, self.written_to),
            what="count the staging rows and the transform" + (" per partition" if self.dynamic_partitions else ""),
        )
        return hive_dml.read_counts(rows, self.written_to)

    def count_target(self, hive: HiveSessionHook, partitions: list[str]) -> dict[str, int]:
        """The target's rows in each written partition, in one statement."""
        statement = hive_dml.count_target(self.written_to, partitions)
        if statement is None:
            return {}
        what = f"count the target's {len(partitions)} written partition(s)" if partitions else "count the target"
        rows = hive.execute(statement, what=what)
        return hive_dml.read_target_counts(rows, self.written_to, partitions)

    def insert(self, hive: HiveSessionHook, expected: dict[str, int]) -> None:
        """INSERT OVERWRITE the transform, all-dynamic (:mod:`flux_provider.formats.hive_dml`)."""
        target = self.written_to
        names = hive.column_names(self.sql) if target.needs_select_columns else ()
        *settings, statement = hive_dml.insert(target, self.sql, empty=not expected, select_columns=names)
        for setting in settings:
            hive.execute(setting)
        hive.execute(statement, what=f"INSERT OVERWRITE {self.target}" + ("" if expected else " (no rows)"))

    def _check_expectations(self, staging_rows: int, output_rows: int) -> None:
        expected = staging_rows if self.expect_rows == "staging" else self.expect_rows
        if expected is not None and output_rows != expected:
            raise self._fail(
                f"the transform yields {output_rows} rows, expected {expected}"
                + (" (= staging rows: expect_rows='staging')" if self.expect_rows == "staging" else "")
                + f"; nothing was written to {self.target}",
                ErrorClass.DATA,
            )
        if self.min_rows is not None and output_rows < self.min_rows:
            raise self._fail(
                f"the transform yields {output_rows} rows, fewer than min_rows={self.min_rows}; "
                f"nothing was written to {self.target}",
                ErrorClass.DATA,
            )

    upload_used: UploadResult | None = None  # the upload this try read (for lineage)

    def lineage(self, complete: bool) -> tuple[list, list]:
        """The data set's S3 location (read through the staging table) and the tables the SQL joins -> the
        target table, with the rows and partitions written; columns 1:1 when the SQL copies them unchanged."""
        from flux_provider.operators import lineage

        hive = lineage.hive_namespace(self.hiveserver2_conn_id)
        upload = self.upload_used
        location = upload.location if upload else None
        if location and not location.startswith("s3://"):
            location = f"s3://{upload.bucket}/{location}"
        staging_names = {self.staging_table, self._run_view or self.staging_table}
        inputs = []
        if location:
            staging = (hive, f"{self.staging_database}.{self.staging_table}")
            inputs.append(lineage.s3_location_dataset(location, staging=staging))
        for name in lineage.query_tables(str(self.sql), "hive", self.database):
            database, _, table = name.partition(".")
            if not (database == self.staging_database and table in staging_names):
                inputs.append(lineage.hive_dataset(hive, name))
        result = TransformResult.from_json(self.flux_result) if complete else None
        if result and result.columns:
            columns = [(c.name, c.type) for c in result.columns]
        else:
            columns = list((self.target_columns or {}).items())
        copied = inputs[0] if location and len(inputs) == 1 else None
        if copied is not None and not lineage.copies_columns_unchanged(str(self.sql), [c for c, _ in columns]):
            copied = None
        output = lineage.target_output(
            hive,
            f"{self.database}.{self.target_table}",
            rows=result.target_rows if result else None,
            columns=columns,
            identity_from=copied,
            partitions=result.partitions if result else None,
        )
        return inputs, [output]

    def work(self, context) -> dict:
        if not str(self.sql).strip():
            raise self._fail("the transform SQL is empty")
        info = self.upload_used = self._upload_info(context)
        manifest = self._manifest(info)
        started, began = time.monotonic(), dt.datetime.now(dt.timezone.utc)
        self._session = hive = HiveSessionHook(self.hiveserver2_conn_id, dataset=self.dataset, step="transform")
        try:
            run, columns = self.ensure_staging(hive, manifest)
            self.ensure_target(hive)  # before the counts: a transform may read its own target
            staging_rows, expected = self.count_rows(hive)
            self._check_staging(staging_rows, manifest, run, info)
            self._check_expectations(staging_rows, sum(expected.values()))
            self.insert(hive, expected)
            written = self._check_written(expected, self.count_target(hive, list(expected)))
            if not self.written_to.partition_columns:  # a partitioned target is cleaned by its refresh
                self._remove_leftovers(context, hive, began)
            landed = self.prune_landing(context, hive, run)
        finally:
            self._drop_run_view(hive)
            statements = hive.statements
            hive.close()
            self._session = None
        seconds = time.monotonic() - started
        self._log_done(written, staging_rows, seconds)
        return TransformResult(
            dataset=self.dataset,
            run=run,
            staging=self.staging_latest,
            target=self.target,
            database=self.database,
            table=self.target_table,
            manifest_rows=manifest.rows,
            staging_rows=staging_rows,
            target_rows=sum(written.values()),
            partitions=[
                WrittenPartition(name=k, values=hive_ddl.parse_partition_name(k), rows=v)
                for k, v in sorted(written.items())
                if k
            ],
            columns={c.name: c.hive_type for c in columns},
            statements=statements,
            seconds=round(seconds, 3),
            landing=landed,
        ).to_json()

    def _check_staging(self, staging_rows: int, manifest: Manifest, run: str, info: UploadResult) -> None:
        if staging_rows != manifest.rows:
            raise self._fail(
                f"staging {self.staging} (run {run}) has {staging_rows} rows but the manifest "
                f"s3://{manifest.bucket}/{info.manifest} records {manifest.rows}: the upload and its "
                "Hive reading disagree (encoding, delimiters or files changed); nothing was written",
                ErrorClass.DATA,
            )
        self.log.info("data set %s: staging %s has %d rows = manifest", self.dataset, self.staging, staging_rows)

    def _check_written(self, expected: dict[str, int], written: dict[str, int]) -> dict[str, int]:
        if written != expected:
            diff = {
                k: (expected.get(k), written.get(k))
                for k in expected.keys() | written.keys()
                if expected.get(k) != written.get(k)
            }
            raise self._fail(
                f"{self.target} holds other row counts than the transform produced "
                f"(partition: (expected, found)) {diff}",
                ErrorClass.DATA,
            )
        return written

    def _drop_run_view(self, hive: HiveSessionHook) -> None:
        if self.staging != self.staging_latest:
            try:
                hive.execute(f"DROP VIEW IF EXISTS {self.staging}")
            except FluxError as exc:  # housekeeping never fails a transform
                self.log.warning("data set %s: could not drop %s: %s", self.dataset, self.staging, exc)

    def _log_done(self, written: dict[str, int], staging_rows: int, seconds: float) -> None:
        for name, rows in sorted(written.items()):
            self.log.info("data set %s: %s %s: %d rows", self.dataset, self.target, name or "(table)", rows)
        self.log.info(
            "data set %s: transform done in %.1fs: staging %d rows -> target %d rows in %d partition(s)",
            self.dataset,
            seconds,
            staging_rows,
            sum(written.values()),
            len(written),
        )

    def _remove_leftovers(self, context, hive: HiveSessionHook, before: dt.datetime) -> None:
        """Staging files that killed INSERTs left under the (unpartitioned) target, written before this try."""
        try:
            rows = hive.execute(f"DESCRIBE FORMATTED {self.target}", what=f"locate {self.target}")
        except FluxError as exc:  # housekeeping never fails a transform that did its work
            self.log.warning("data set %s: could not locate %s to clean it: %s", self.dataset, self.target, exc)
            return
        location = next((str(r[1]).strip() for r in rows if str(r[0]).strip() == "Location"), None)
        self.clean_insert_leftovers(context, self.aws_conn_id, location, before)

    def on_kill(self) -> None:
        if self._session is not None:
            self._session.cancel()


__all__ = ["HiveTransformOperator"]
