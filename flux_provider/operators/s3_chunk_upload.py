"""S3ChunkUploadOperator: step 2, the export file -> Hive text chunks in the data set's S3 location.

Example::

    from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator

    upload = S3ChunkUploadOperator(
        task_id="upload",
        dataset="titles",
        export_task_id="export",             # the BcpExportOperator whose file is uploaded
        s3_location="s3://flux/datasets/titles",
        chunk_mb=32,                         # and/or chunk_rows=...
        compression="gzip",                  # or None
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

import re
import socket
import time
from collections.abc import Sequence
from pathlib import Path


from flux_provider.errors import ErrorClass
from flux_provider.formats.chunker import chunks, return_big_buffers_to_the_os
from flux_provider.formats.hive_text import BcpToHive, CsvToHive, HiveTextEncoding
from flux_provider.hooks.s3_chunks import ChunkUploader, split_s3_url
from flux_provider.operators.base import FluxOperator


def _encoder(info: dict, encoding: HiveTextEncoding) -> BcpToHive | CsvToHive:
    """The decoder the export's ``format`` asks for: bcp character mode (default) or CSV."""
    columns = len(info["columns"])
    if info.get("format") == "csv":
        return CsvToHive(columns, encoding, header=info.get("header", False), delimiter=info.get("delimiter", ","),
                         empty_is_null=info.get("empty_is_null", True))
    return BcpToHive(info["field_terminator"], info["row_terminator"], columns, encoding)


def run_key_for(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", run_id).strip("._") or "run"


class S3ChunkUploadOperator(FluxOperator):
    """Encode a bcp export to Hive text chunks and publish them to the data set's S3 location.

    :param dataset: the data set's name.
    :param s3_location: ``s3://bucket/prefix`` of the data set (templated).
    :param export_task_id: task whose XCom describes the export file (default ``export``).
    :param export: the export's XCom dict itself, instead of ``export_task_id`` (templated).
    :param aws_conn_id: Airflow AWS connection.
    :param chunk_mb: close a chunk at this many MB of Hive text (before compression).
    :param chunk_rows: close a chunk at this many rows (either limit closes it).
    :param compression: ``None`` or ``"gzip"`` (per chunk, ``.gz``); ``gzip_level`` 1-9.
    :param field_delimiter, collection_delimiter, map_key_delimiter, null_format: Hive encoding.
    :param max_inflight: chunks uploading at once (memory: about (max_inflight + 2) * chunk_mb
        + 3 * (encode_workers + 1) * block_mb MB).
    :param multipart_mb: chunks of at least this size go up as multipart uploads of this part size
        (smaller ones in one PUT each).
    :param block_mb, encode_workers: blocks of this size are encoded on this many threads at once.
    :param delete_export: delete the export file once the run is published.
    """

    template_fields: Sequence[str] = ("s3_location", "export")
    ui_color = "#ffe3b3"
    step = "upload"

    def __init__(self, *, dataset: str, s3_location: str, export_task_id: str | None = "export",
                 export: dict | str | None = None, aws_conn_id: str | None = "aws_default",
                 chunk_mb: float | None = 32, chunk_rows: int | None = None, compression: str | None = None,
                 gzip_level: int = 6, field_delimiter: str = "\x01", collection_delimiter: str = "\x02",
                 map_key_delimiter: str = "\x03", null_format: str = "\\N", max_inflight: int = 4,
                 multipart_mb: int = 64, block_mb: float = 8, encode_workers: int = 2, delete_export: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.dataset, self.s3_location = dataset, s3_location
        self.export_task_id, self.export, self.aws_conn_id = export_task_id, export, aws_conn_id
        self.chunk_mb, self.chunk_rows, self.compression, self.gzip_level = chunk_mb, chunk_rows, compression, gzip_level
        self.encoding_args = dict(field=field_delimiter, collection=collection_delimiter, map_key=map_key_delimiter,
                                  null=null_format)
        self.max_inflight, self.multipart_mb, self.block_mb = max_inflight, multipart_mb, block_mb
        self.encode_workers = encode_workers
        self.delete_export = delete_export
        self._uploader: ChunkUploader | None = None

    def _export_info(self, context) -> dict:
        info = self.export
        if info is None and self.export_task_id:
            info = context["ti"].xcom_pull(task_ids=self.export_task_id)
        if isinstance(info, str):
            import json

            info = json.loads(info)
        if not isinstance(info, dict) or "path" not in info:
            raise self._fail(f"no export to upload: task {self.export_task_id!r} pushed {info!r}; "
                             "run the export step first or pass export=")
        path = Path(info["path"])
        here = socket.gethostname()
        if not path.exists():
            where = info.get("host")
            if where and where != here:
                raise self._fail(
                    f"the export file {path} was written on host {where!r} but this task runs on {here!r}. "
                    "Run export and upload on the same worker (a per-host queue), use a staging_dir shared by "
                    "all workers, or use streaming mode (export straight into the upload)")
            raise self._fail(f"the export file {path} does not exist (deleted, or the export ran elsewhere); "
                             "clear the export task to produce it again", ErrorClass.MISSING_OBJECT)
        if path.stat().st_size != info.get("bytes", path.stat().st_size):
            raise self._fail(f"the export file {path} has {path.stat().st_size} bytes, the export recorded "
                             f"{info['bytes']}: it was changed or is from another try", ErrorClass.DATA)
        return info

    def run(self, context) -> dict:
        info = self._export_info(context)
        with open(info["path"], "rb") as stream:
            result = self.upload_stream(stream, info, context["ti"].run_id)
        if self.delete_export:
            Path(info["path"]).unlink(missing_ok=True)
        return result

    def upload_stream(self, stream, info: dict, run_id: str, *, before_publish=None) -> dict:
        """Encode and upload everything ``stream`` yields (a file or a pipe), then publish.

        ``before_publish(rows)`` runs after the last chunk is uploaded and before anything is
        published; raising there (e.g. the export that fed a pipe failed) publishes nothing.
        """
        from flux_provider.hooks.s3_client import s3_client
        from boto3.s3.transfer import TransferConfig

        if self.compression not in (None, "gzip"):
            raise self._fail(f"compression {self.compression!r} is not None or 'gzip'")
        try:
            bucket, location = split_s3_url(self.s3_location)
            encoding = HiveTextEncoding(**self.encoding_args)
            encoder = _encoder(info, encoding)
        except ValueError as exc:
            raise self._fail(str(exc)) from exc
        client = s3_client(self.aws_conn_id)
        return_big_buffers_to_the_os()
        part = self.multipart_mb * 2**20
        self._uploader = uploader = ChunkUploader(
            client, bucket, location, run_key_for(run_id), dataset=self.dataset,
            extension=".hive.gz" if self.compression else ".hive", max_inflight=self.max_inflight,
            transfer_config=TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=2,
                                           use_threads=True),
        )
        started = time.monotonic()
        last_log, rows, raw, sent = started, 0, 0, 0
        try:
            run = uploader.start()
            self.log.info("data set %s: uploading %s rows from %s to s3://%s/%s", self.dataset,
                          info.get("rows", "?"), info.get("path", "a stream"), bucket, run.prefix)
            for chunk in chunks(stream, encoder, target_bytes=int(self.chunk_mb * 2**20) if self.chunk_mb else None,
                                target_rows=self.chunk_rows,
                                gzip_level=self.gzip_level if self.compression else None,
                                block_size=int(self.block_mb * 2**20), workers=self.encode_workers):
                uploader.submit(chunk)
                rows, raw, sent = rows + chunk.rows, raw + chunk.raw_bytes, sent + len(chunk.data)
                now = time.monotonic()
                if now - last_log >= 10:
                    last_log = now
                    self._progress(rows, raw, info.get("rows"), now - started)
            run = uploader.finish()
            if before_publish is not None:
                before_publish(rows)
            if info.get("rows") is not None and rows != info["rows"]:
                raise self._fail(f"encoded {rows} rows but the export recorded {info['rows']}", ErrorClass.DATA)
            manifest = uploader.publish({
                "columns": info["columns"], "encoding": encoding.to_dict(), "compression": self.compression,
                "source": {k: info.get(k) for k in ("path", "host", "rows", "bytes", "engine", "tool", "format")
                           if info.get(k) is not None},
            })
        except ValueError as exc:
            uploader.abort()
            raise self._fail(f"the export {info.get('path', '(a stream)')} does not decode, nothing was published: "
                             f"{exc}. Fix the file (or the export's terminators/format) and clear the task",
                             ErrorClass.DATA) from exc
        except BaseException:
            uploader.abort()
            raise
        finally:
            uploader.close()
            self._uploader = None
        seconds = time.monotonic() - started
        skipped = sum(c.skipped for c in run.chunks)
        self.log.info("data set %s: published %d rows in %d chunks (%d reused from an earlier try), %.1f MB "
                      "(%.1f MB on S3) in %.1fs, %.1f MB/s -> s3://%s/%s", self.dataset, manifest["rows"],
                      len(run.chunks), skipped, raw / 1e6, sent / 1e6, seconds, raw / 1e6 / max(seconds, 1e-9),
                      bucket, run.prefix)
        return {
            "dataset": self.dataset, "location": self.s3_location, "bucket": bucket, "prefix": run.prefix,
            "manifest": run.prefix + "_manifest.json", "rows": manifest["rows"], "chunks": len(run.chunks),
            "chunks_reused": skipped, "bytes": manifest["bytes"], "raw_bytes": manifest["raw_bytes"],
            "compression": self.compression, "encoding": encoding.to_dict(), "columns": info["columns"],
            "seconds": round(seconds, 3),
        }

    def _progress(self, rows: int, raw: int, total_rows: int | None, elapsed: float) -> None:
        rate = raw / 1e6 / max(elapsed, 1e-9)
        eta = ""
        if total_rows:
            eta = f", ETA {max(total_rows - rows, 0) / max(rows / elapsed, 1e-9):.0f}s"
        self.log.info("data set %s: %d%s rows, %.1f MB encoded, %.1f MB/s%s", self.dataset, rows,
                      f"/{total_rows}" if total_rows else "", raw / 1e6, rate, eta)

    def on_kill(self) -> None:
        if self._uploader is not None:
            self._uploader.abort()


__all__ = ["S3ChunkUploadOperator", "run_key_for"]
