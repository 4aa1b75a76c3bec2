"""BcpToS3Operator: streaming mode, export -> encode -> upload in one task with no intermediate file.

Example::

    from flux_provider.operators.bcp_to_s3 import BcpToS3Operator

    BcpToS3Operator(
        task_id="export_upload",
        dataset="viewing_sessions",
        schema="dbo", table="viewing_sessions",
        s3_location="s3://flux/datasets/viewing_sessions",
        upload_options={"chunk_mb": 64, "compression": "gzip"},
    )

The bcp tool (or the DB-API engine) writes into a named pipe that the upload
reads, so export, encoding and upload overlap, no disk space is used and there
is no hand-off file between hosts: this is the mode to use with CeleryExecutor
and several workers. Publishing waits for the export's own verdict (exit code,
server messages, row count, optional count query): a failed export publishes
nothing. Accepts every ``BcpExportOperator`` argument plus ``s3_location``,
``aws_conn_id`` and ``upload_options`` (a dict of the chunking, encoding and transfer
arguments of ``S3ChunkUploadOperator``, or a spec's ``Chunking`` record as it is; both
use :class:`~flux_provider.hooks.s3_chunk_upload.S3ChunkUploadHook`).
XCom ``return_value``: the upload's result with the export's under ``export``.

One part of a split export (what the DAG factory maps over a data set's plan)::

    BcpToS3Operator.partial(task_id="export_upload", dataset="viewing_sessions", s3_location=...,
                            map_index_template="{{ task.part['name'] }}").expand(part=plan.output)

``part`` is one item of :class:`~flux_provider.operators.split_plan.SplitPlanOperator`'s
plan: its query and count replace ``sql``/``table`` and ``count_sql``; it uploads
into the run prefix the plan fixed, as that part's chunks, and completes with a
part manifest instead of publishing (``PublishRunOperator`` publishes the run).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import select
import threading
import time
from collections.abc import Sequence

from flux_provider.encoding import Chunking
from flux_provider.errors import ErrorClass
from flux_provider.handoffs import ExportResult, UploadResult
from flux_provider.hooks.s3_chunk_upload import ChunkSettings, S3ChunkUploadHook
from flux_provider.operators.base import try_number
from flux_provider.operators.bcp_export import BcpExportOperator
from flux_provider.run_day import VARIABLE as DAY_VARIABLE
from flux_provider.source_timing import FirstRow
from flux_provider.splits import Part


class PipeExport:
    """The export engine in a thread, writing into a named pipe that the upload reads."""

    def __init__(self, engine, pipe):
        self.engine, self.pipe = engine, pipe
        self.rows: int | None = None
        self.tool: str | None = None
        self.error: BaseException | None = None
        self.reader_done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="flux-export", daemon=True)

    def _run(self) -> None:
        try:
            self.rows, self.tool = self.engine(str(self.pipe))
        except BaseException as exc:  # handed to the main thread, which decides
            self.error = exc
        finally:
            self._release_reader()

    def _release_reader(self) -> None:
        """The engine may have failed before opening the pipe: open and close it once a reader is there,
        so the reader sees EOF instead of waiting forever."""
        while not self.reader_done.is_set():
            try:
                os.close(os.open(self.pipe, os.O_WRONLY | os.O_NONBLOCK))
                break
            except FileNotFoundError:
                break
            except OSError:  # ENXIO: the reader has not opened the pipe yet
                time.sleep(0.02)

    def wait(self) -> None:
        """Wait for the export's own verdict; raise its error."""
        self.thread.join()
        if self.error is not None:
            raise self.error

    def failed_first(self) -> BaseException | None:
        """The export's error if it already ended with one (it then explains the upload's failure)."""
        self.thread.join(timeout=0.5)
        return self.error if not self.thread.is_alive() else None


class BcpToS3Operator(BcpExportOperator):
    template_fields: Sequence[str] = (*BcpExportOperator.template_fields, "s3_location")
    ui_color = "#d6c9ff"
    step = "export_upload"

    def __init__(
        self,
        *,
        s3_location: str,
        aws_conn_id: str | None = "aws_default",
        upload_options: dict | Chunking | None = None,
        part: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.s3_location, self.aws_conn_id = s3_location, aws_conn_id
        self.upload_options = upload_options if isinstance(upload_options, Chunking) else dict(upload_options or {})
        self.settings = ChunkSettings.of(self.upload_options, dataset=self.dataset)
        self.part = part
        self._upload: S3ChunkUploadHook | None = None

    def _part(self) -> Part | None:
        return Part.from_json(self.part) if isinstance(self.part, dict) else None

    def _fail(self, message: str, error_class: ErrorClass = ErrorClass.CONFIG):
        part = self._part()
        return super()._fail(f"part {part.name}: {message}" if part else message, error_class)

    def lineage(self, complete: bool) -> tuple[list, list]:
        from flux_provider.operators import lineage

        inputs = self.source_lineage()
        upload = UploadResult.from_json(self.flux_result) if complete else None
        export = upload.export if upload else None
        output = lineage.export_output(
            self.s3_location,
            rows=upload.rows if upload else None,
            size=upload.bytes if upload else None,
            columns=lineage.export_columns(export.columns if export else None),
            source=inputs[0] if len(inputs) == 1 else None,
        )
        return inputs, [output]

    def work(self, context) -> dict:
        started = time.monotonic()
        part = self._part()
        if part:
            self.table = self.schema = None
            self.sql, self.count_sql = part.sql, part.count_sql
        self.prepare()
        final, _ = self._paths(context)
        pipe = final.with_name(final.name + ".fifo")
        pipe.unlink(missing_ok=True)
        os.mkfifo(pipe, 0o600)
        first_row = FirstRow()
        export = PipeExport(functools.partial(self.run_engine, first_row=first_row), pipe)
        info = self.export_info(path=None, rows=None, size=None, tool="", seconds=0)

        def before_publish(encoded_rows: int) -> ExportResult:
            export.wait()
            if encoded_rows != export.rows:
                raise self._fail(
                    f"the export reported {export.rows} rows but {encoded_rows} arrived through the pipe",
                    ErrorClass.DATA,
                )
            self.check_count(export.rows)
            return dataclasses.replace(info, rows=export.rows, tool=export.tool)

        self._upload = S3ChunkUploadHook(self.aws_conn_id, dataset=self.dataset, settings=self.settings)
        self.log.info(
            "data set %s: streaming %s engine -> encoder -> s3 via %s", self.dataset, self.chosen_engine, pipe
        )
        export.thread.start()
        try:
            with open(pipe, "rb") as stream:
                select.select([stream], [], [])  # the first byte (or the end, when nothing is sent)
                first_row.seen()
                result = self._upload.upload_stream(
                    stream,
                    info,
                    self.s3_location,
                    context["ti"].run_id,
                    before_publish=before_publish,
                    part=part.name if part else None,
                    prefix=part.prefix if part else None,
                    day=context.get(DAY_VARIABLE),
                    attempt=try_number(context),
                )
        except BaseException:
            if (first := export.failed_first()) is not None:
                raise first from None  # the export failed first: its error says why
            self.on_kill()  # the upload failed: stop the export, nobody reads the pipe any more
            export.thread.join(timeout=30)
            raise
        finally:
            export.reader_done.set()
            pipe.unlink(missing_ok=True)
        seconds = time.monotonic() - started
        done = self.export_info(path=None, rows=export.rows, size=result.raw_bytes, tool=export.tool, seconds=seconds)
        return dataclasses.replace(result, export=done).to_json()

    def on_kill(self) -> None:
        super().on_kill()
        if self._upload is not None:
            self._upload.abort()
