"""S3ChunkUploadOperator: step 2, the export file -> Hive text chunks in the data set's S3 location.

Example::

    from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator

    upload = S3ChunkUploadOperator(
        task_id="upload",
        dataset="titles",
        export_task_id="export",             # the BcpExportOperator whose file is uploaded
        s3_location="s3://flux/datasets/titles",
        chunk_mb=32,                         # and/or chunk_rows=...
        compression="gzip",                  # the default; None for plain .hive chunks
    )

A CSV file from elsewhere is uploaded the same way: pass its description as ``export``::

    S3ChunkUploadOperator(
        task_id="upload_csv", dataset="titles", s3_location="s3://flux/datasets/titles",
        export={"path": "/data/titles.csv", "format": "csv", "header": True,
                "columns": [{"name": "title_id", "type_name": "bigint", "system_type_name": "bigint"},
                            {"name": "name", "type_name": "nvarchar", "system_type_name": "nvarchar(200)"}]},
    )

(RFC 4180: quoted fields may hold commas, ``""`` and newlines; an unquoted empty field is NULL,
``""`` an empty string, unless ``"empty_is_null": False``; ``"delimiter"`` defaults to ``,``.)

Reads the export file in blocks, encodes whole rows to Hive LazySimpleSerDe text
(``\\x01`` fields, ``\\N`` NULL, backslash escapes), cuts chunks at row boundaries
and uploads them concurrently while the next chunk is encoded. The run is
published atomically (manifest last, then the ``_published.json`` pointer), a
rerun replaces it exactly, resuming chunks already uploaded. XCom
``return_value``: location, run prefix, manifest key, rows, chunks, bytes,
encoding, compression and the columns (for the Hive step).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

from flux_provider.encoding import Chunking
from flux_provider.errors import ErrorClass
from flux_provider.handoffs import ExportResult, UploadResult
from flux_provider.hooks.s3_chunk_upload import UPLOAD_OPTIONS, ChunkSettings, S3ChunkUploadHook
from flux_provider.operators.base import FluxOperator, try_number
from flux_provider.run_day import VARIABLE as DAY_VARIABLE
from flux_provider.s3_layout import run_key_for


class S3ChunkUploadOperator(FluxOperator):
    """Encode a bcp export to Hive text chunks and publish them to the data set's S3 location.

    :param dataset: the data set's name.
    :param s3_location: ``s3://bucket/prefix`` of the data set (templated).
    :param export_task_id: task whose XCom describes the export file (default ``export``).
    :param export: the export's XCom dict itself, instead of ``export_task_id`` (templated).
    :param aws_conn_id: Airflow AWS connection.
    :param chunk_mb: close a chunk at this many MB of Hive text (before compression).
    :param chunk_rows: close a chunk at this many rows (either limit closes it).
    :param compression: ``"gzip"`` (the default: each chunk a ``.hive.gz``) or ``None``; ``gzip_level`` 1-9.
    :param field_delimiter: Hive's field delimiter (default ``\\x01``).
    :param collection_delimiter: Hive's collection item delimiter (default ``\\x02``).
    :param map_key_delimiter: Hive's map key delimiter (default ``\\x03``).
    :param null_format: how NULL is written (default ``\\N``).
    :param max_inflight: chunks uploading at once (memory: about (max_inflight + 2) * chunk_mb
        + 3 * (encode_workers + 1) * block_mb MB).
    :param multipart_mb: chunks of at least this size go up as multipart uploads of this part size
        (smaller ones in one PUT each).
    :param block_mb: the size of the blocks the export is encoded in.
    :param encode_workers: threads that encode blocks at once.
    :param delete_export: delete the export file once the run is published.
    :param chunking: the chunking and encoding as one :class:`~flux_provider.encoding.Chunking`
        record (a spec's ``<chunking>``); the single arguments above, if given too, override its fields.
    """

    template_fields: Sequence[str] = ("s3_location", "export")
    ui_color = "#ffe3b3"
    step = "upload"

    def __init__(
        self,
        *,
        dataset: str,
        s3_location: str,
        export_task_id: str | None = "export",
        export: dict | str | None = None,
        aws_conn_id: str | None = "aws_default",
        delete_export: bool = True,
        chunking: Chunking | None = None,
        **kwargs,
    ):
        """The chunking and encoding arguments (``chunk_mb``, ``compression``, ``field_delimiter``, ...) are
        :class:`~flux_provider.encoding.Chunking`'s fields, the transfer's (``max_inflight``,
        ...) :class:`~flux_provider.hooks.s3_chunk_upload.ChunkSettings`', with their defaults."""
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in UPLOAD_OPTIONS}
        super().__init__(**kwargs)
        self.dataset, self.s3_location = dataset, s3_location
        self.export_task_id, self.export, self.aws_conn_id = export_task_id, export, aws_conn_id
        self.settings = ChunkSettings.of(options, chunking=chunking, dataset=dataset)
        self.delete_export = delete_export
        self._hook: S3ChunkUploadHook | None = None
        self.export_used: ExportResult | None = None  # the export this try uploaded (for lineage)

    def _export_info(self, context) -> ExportResult:
        info = self.export
        if info is None and self.export_task_id:
            info = context["ti"].xcom_pull(task_ids=self.export_task_id)
        try:
            export = ExportResult.from_json(info)
        except (TypeError, ValueError) as exc:
            raise self._fail(f"the export that task {self.export_task_id!r} handed on cannot be read: {exc}") from exc
        if export is None or export.path is None:
            raise self._fail(
                f"no export to upload: task {self.export_task_id!r} pushed {info!r}; "
                "run the export step first or pass export="
            )
        path = Path(export.path)
        here = self.host or socket.gethostname()
        if not path.exists():
            if export.host and export.host != here:
                raise self._fail(
                    f"the export file {path} was written on host {export.host!r} but this task runs on {here!r}. "
                    "Run export and upload on the same worker (a per-host queue), use a staging_dir shared by "
                    "all workers, or use streaming mode (export straight into the upload)"
                )
            raise self._fail(
                f"the export file {path} does not exist (deleted, or the export ran elsewhere); "
                "clear the export task to produce it again",
                ErrorClass.MISSING_OBJECT,
            )
        size = path.stat().st_size
        if export.bytes is not None and size != export.bytes:
            raise self._fail(
                f"the export file {path} has {size} bytes, the export recorded "
                f"{export.bytes}: it was changed or is from another try",
                ErrorClass.DATA,
            )
        return export

    def hook(self) -> S3ChunkUploadHook:
        self._hook = S3ChunkUploadHook(self.aws_conn_id, dataset=self.dataset, settings=self.settings)
        return self._hook

    def lineage(self, complete: bool) -> tuple[list, list] | None:
        from flux_provider.operators import lineage

        upload = UploadResult.from_json(self.flux_result) if complete else None
        export = self.export_used
        inputs = [lineage.file_input(export.host, export.path)] if export and export.path else []
        output = lineage.export_output(
            self.s3_location,
            rows=upload.rows if upload else None,
            size=upload.bytes if upload else None,
            columns=lineage.export_columns(export.columns if export else None),
            source=inputs[0] if inputs else None,
        )
        return inputs, [output]

    def work(self, context) -> dict:
        export = self.export_used = self._export_info(context)
        with open(export.path, "rb") as stream:
            result = self.hook().upload_stream(
                stream,
                export,
                self.s3_location,
                context["ti"].run_id,
                day=context.get(DAY_VARIABLE),
                attempt=try_number(context),
            )
        if self.delete_export:
            Path(export.path).unlink(missing_ok=True)
        return result.to_json()

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.abort()


__all__ = ["S3ChunkUploadOperator", "run_key_for"]
