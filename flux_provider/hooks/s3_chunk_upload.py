"""The chunked Hive-text upload: an export stream -> encoded chunks -> one published run in S3.

Used by both upload operators (``S3ChunkUploadOperator`` reads an export file,
``BcpToS3Operator`` a named pipe the export writes into). Reads the stream in
blocks, encodes whole rows to Hive LazySimpleSerDe text (:mod:`flux_provider.formats.hive_text`),
cuts chunks at row boundaries (:mod:`flux_provider.formats.chunker`) and uploads
them concurrently while the next ones encode (:class:`~flux_provider.hooks.chunk_uploader.ChunkUploader`);
the run is published only after every chunk is up and ``before_publish`` agreed.
Memory: about ``(max_inflight + 2) * chunk_mb + 3 * (encode_workers + 1) * block_mb`` MB.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from airflow.sdk.bases.hook import BaseHook

from flux_provider.encoding import Chunking, HiveTextEncoding
from flux_provider.errors import ErrorClass, FluxError, flux_error
from flux_provider.handoffs import ExportResult, UploadResult
from flux_provider.hooks.chunk_uploader import ChunkUploader, GenerationUpload
from flux_provider.hooks.s3_client import s3_client
from flux_provider.run_records import ExportSource, PartManifest
from flux_provider.s3_layout import parse_s3_url, run_key_for


@dataclass(frozen=True)
class ChunkSettings:
    """How a run is cut, encoded and sent: its :class:`~flux_provider.encoding.Chunking` (the
    format, shared with the spec) and how the transfer is tuned (see ``S3ChunkUploadOperator``)."""

    chunking: Chunking = Chunking()
    gzip_level: int = 6
    max_inflight: int = 4
    multipart_mb: int = 64
    block_mb: float = 8
    encode_workers: int = 2

    @classmethod
    def of(
        cls, options: dict | Chunking, *, chunking: Chunking | None = None, dataset: str | None = None
    ) -> ChunkSettings:
        """The settings ``options`` names (an operator's ``upload_options``, or a :class:`Chunking` record as
        it is), over ``chunking`` (default: the defaults): a wrong name or value fails at once, when the
        operator is made."""
        if isinstance(options, Chunking):
            options, chunking = {}, options
        unknown = sorted(set(options) - UPLOAD_OPTIONS)
        chunking_names = {f.name for f in dataclasses.fields(Chunking)}
        try:
            if unknown:
                known = ", ".join(sorted(UPLOAD_OPTIONS))
                raise ValueError(f"{', '.join(unknown)} is not an upload option; the options are {known}")
            base = chunking if chunking is not None else Chunking()
            chunking = dataclasses.replace(base, **{k: v for k, v in options.items() if k in chunking_names})
            return cls(chunking, **{k: v for k, v in options.items() if k not in chunking_names})
        except ValueError as exc:
            raise flux_error(
                f"upload_options: {exc}", error_class=ErrorClass.CONFIG, dataset=dataset, step="upload"
            ) from None

    def encoding(self) -> HiveTextEncoding:
        return self.chunking.encoding()


#: The names an upload operator's options may use: the chunking's and the transfer's.
UPLOAD_OPTIONS = frozenset(
    f.name for f in (*dataclasses.fields(Chunking), *dataclasses.fields(ChunkSettings)) if f.name != "chunking"
)


def _decoder(export: ExportResult, encoding: HiveTextEncoding):
    """The decoder the export's ``format`` asks for: bcp character mode (default) or CSV."""
    from flux_provider.formats.hive_text import BcpToHive, CsvToHive  # Arrow: at run time, not at DAG parse

    columns = len(export.columns)
    if export.format == "csv":
        return CsvToHive(
            columns,
            encoding,
            header=export.header,
            delimiter=export.delimiter or ",",
            empty_is_null=export.empty_is_null,
        )
    return BcpToHive(export.field_terminator, export.row_terminator, columns, encoding, format=export.format)


class S3ChunkUploadHook(BaseHook):
    """Encode and upload one run of a data set to ``s3_location`` over the AWS connection's S3 client."""

    conn_name_attr = "aws_conn_id"
    default_conn_name = "aws_default"
    hook_name = "flux chunked Hive-text upload to S3"

    def __init__(
        self,
        aws_conn_id: str | None = default_conn_name,
        *,
        dataset: str,
        settings: ChunkSettings = ChunkSettings(),
        log_every: float = 10.0,
    ):
        super().__init__()
        self.aws_conn_id, self.dataset, self.settings, self.log_every = aws_conn_id, dataset, settings, log_every
        self._uploader: ChunkUploader | None = None

    def _fail(self, message: str, error_class: ErrorClass = ErrorClass.CONFIG) -> FluxError:
        return flux_error(message, error_class=error_class, dataset=self.dataset, step="upload")

    def upload_stream(
        self,
        stream,
        export: ExportResult,
        s3_location: str,
        run_id: str,
        *,
        before_publish=None,
        part: str | None = None,
        prefix: str | None = None,
        day: str | None = None,
        attempt: int | None = None,
    ) -> UploadResult:
        """Encode and upload everything ``stream`` yields (a file or a pipe), then publish.

        ``before_publish(rows)`` runs after the last chunk and before anything is published: raising there
        publishes nothing, and the :class:`~flux_provider.handoffs.ExportResult` it may return is what the
        manifest records.
        ``part`` (with the run's ``prefix``, fixed by the split plan): upload one part of a split run and
        complete it with a part manifest. ``day``: the pointer never moves to an older day. ``attempt``: a
        try that a newer try of the same run superseded is refused before it deletes or publishes anything.
        """
        bucket, location, decoder = self._prepare(s3_location, export)
        self._uploader = uploader = self._chunk_uploader(bucket, location, run_key_for(run_id), part, prefix, attempt)
        started = time.monotonic()
        try:
            upload = uploader.start()
            rows = export.rows if export.rows is not None else "?"
            self.log.info(
                "data set %s: uploading %s rows from %s to %s",
                self.dataset,
                rows,
                export.path or "a stream",
                upload.generation.url,
            )
            rows, raw, sent = self._send(stream, decoder, uploader, export.rows, started)
            upload = uploader.finish()
            if before_publish is not None:
                export = before_publish(rows) or export
            if export.rows is not None and rows != export.rows:
                raise self._fail(f"encoded {rows} rows but the export recorded {export.rows}", ErrorClass.DATA)
            manifest = self._complete(uploader, export, part, day)
        except ValueError as exc:
            uploader.abort()
            raise self._fail(
                f"the export {export.path or '(a stream)'} does not decode, nothing was published: "
                f"{exc}. Fix the file (or the export's terminators/format) and clear the task",
                ErrorClass.DATA,
            ) from exc
        except BaseException:
            uploader.abort()
            raise
        finally:
            uploader.close()
            self._uploader = None
        seconds = time.monotonic() - started
        self._log_done(upload, manifest, part, raw, sent, seconds)
        return self._result(s3_location, upload, manifest, export, part, seconds)

    def _prepare(self, s3_location: str, export: ExportResult):
        """(bucket, location, decoder): a wrong setting fails before anything is read or written."""
        try:
            return (*parse_s3_url(s3_location), _decoder(export, self.settings.encoding()))
        except ValueError as exc:
            raise self._fail(str(exc)) from exc

    def _chunk_uploader(self, bucket, location, run_key, part, prefix, attempt) -> ChunkUploader:
        from boto3.s3.transfer import TransferConfig

        from flux_provider.formats.chunker import return_big_buffers_to_the_os  # Arrow, at run time

        return_big_buffers_to_the_os()
        settings = self.settings
        part_bytes = settings.multipart_mb * 2**20
        return ChunkUploader(
            s3_client(self.aws_conn_id),
            bucket,
            location,
            run_key,
            dataset=self.dataset,
            extension=settings.chunking.extension,
            max_inflight=settings.max_inflight,
            part=part,
            prefix=prefix,
            attempt=attempt,
            transfer_config=TransferConfig(
                multipart_threshold=part_bytes, multipart_chunksize=part_bytes, max_concurrency=2, use_threads=True
            ),
        )

    def _send(self, stream, decoder, uploader: ChunkUploader, total_rows, started: float) -> tuple[int, int, int]:
        """Encode ``stream`` into chunks and submit each; returns (rows, raw bytes, bytes sent)."""
        from flux_provider.formats.chunker import chunks  # Arrow, at run time

        settings, chunking = self.settings, self.settings.chunking
        last_log, rows, raw, sent = started, 0, 0, 0
        for chunk in chunks(
            stream,
            decoder,
            target_bytes=int(chunking.chunk_mb * 2**20) if chunking.chunk_mb else None,
            target_rows=chunking.chunk_rows,
            gzip_level=settings.gzip_level if chunking.compression else None,
            block_size=int(settings.block_mb * 2**20),
            workers=settings.encode_workers,
        ):
            uploader.submit(chunk)
            rows, raw, sent = rows + chunk.rows, raw + chunk.raw_bytes, sent + len(chunk.data)
            now = time.monotonic()
            if now - last_log >= self.log_every:
                last_log = now
                self._progress(rows, raw, total_rows, now - started)
        return rows, raw, sent

    def _complete(self, uploader: ChunkUploader, export: ExportResult, part: str | None, day: str | None):
        """Publish the run (or complete the part) with what the manifest records of the export."""
        source = ExportSource.of(export)
        fields = dict(
            columns=export.columns,
            encoding=self.settings.encoding(),
            compression=self.settings.chunking.compression,
            source=source,
            day=day,
        )
        return uploader.publish_part(**fields) if part else uploader.publish(**fields)

    def _log_done(self, upload: GenerationUpload, manifest, part, raw: int, sent: int, seconds: float) -> None:
        self.log.info(
            "data set %s: %s %d rows in %d chunks (%d reused from an earlier try), %.1f MB "
            "(%.1f MB on S3) in %.1fs, %.1f MB/s -> s3://%s/%s",
            self.dataset,
            f"part {part} uploaded" if part else "published",
            manifest.rows,
            len(upload.chunks),
            upload.reused,
            raw / 1e6,
            sent / 1e6,
            seconds,
            raw / 1e6 / max(seconds, 1e-9),
            upload.generation.bucket,
            upload.prefix,
        )

    def _result(
        self, s3_location: str, upload: GenerationUpload, manifest, export, part, seconds: float
    ) -> UploadResult:
        return UploadResult(
            dataset=self.dataset,
            location=s3_location,
            bucket=upload.generation.bucket,
            prefix=upload.prefix,
            manifest=upload.generation.part_manifest_key(part)
            if isinstance(manifest, PartManifest)
            else upload.generation.manifest_key,
            rows=manifest.rows,
            chunks=len(upload.chunks),
            chunks_reused=upload.reused,
            bytes=manifest.bytes,
            raw_bytes=manifest.raw_bytes,
            compression=self.settings.chunking.compression,
            encoding=self.settings.encoding(),
            columns=export.columns,
            seconds=round(seconds, 3),
            part=part or None,
        )

    def _progress(self, rows: int, raw: int, total_rows: int | None, elapsed: float) -> None:
        rate = raw / 1e6 / max(elapsed, 1e-9)
        eta = ""
        if total_rows:
            eta = f", ETA {max(total_rows - rows, 0) / max(rows / elapsed, 1e-9):.0f}s"
        self.log.info(
            "data set %s: %d%s rows, %.1f MB encoded, %.1f MB/s%s",
            self.dataset,
            rows,
            f"/{total_rows}" if total_rows else "",
            raw / 1e6,
            rate,
            eta,
        )

    def abort(self) -> None:
        """Abort the run's in-flight multipart uploads (``on_kill``); nothing is published."""
        if self._uploader is not None:
            self._uploader.abort()
