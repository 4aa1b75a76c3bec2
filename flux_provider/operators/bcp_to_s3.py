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
``aws_conn_id`` and ``upload_options`` (the chunking and encoding arguments of
``S3ChunkUploadOperator``; both use :class:`~flux_provider.hooks.chunked_upload.S3ChunkUploadHook`).
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
import os
import threading
import time
from collections.abc import Sequence

from flux_provider.errors import ErrorClass
from flux_provider.handoffs import ExportResult, UploadResult
from flux_provider.hooks.chunked_upload import ChunkSettings, S3ChunkUploadHook
from flux_provider.operators.base import try_number
from flux_provider.operators.bcp_export import BcpExportOperator
from flux_provider.run_day import VARIABLE as DAY_VARIABLE


class BcpToS3Operator(BcpExportOperator):
    template_fields: Sequence[str] = (*BcpExportOperator.template_fields, "s3_location")
    ui_color = "#d6c9ff"
    step = "export_upload"

    def __init__(
        self,
        *,
        s3_location: str,
        aws_conn_id: str | None = "aws_default",
        upload_options: dict | None = None,
        part: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.s3_location, self.aws_conn_id = s3_location, aws_conn_id
        self.upload_options = dict(upload_options or {})
        self.part = part
        self._upload: S3ChunkUploadHook | None = None

    def _fail(self, message: str, error_class: ErrorClass = ErrorClass.CONFIG):
        return super()._fail(f"part {self.part['name']}: {message}" if self.part else message, error_class)

    def lineage(self, complete: bool) -> tuple[list, list]:
        from flux_provider.operators import lineage

        inputs = self.source_lineage()
        upload = UploadResult.from_xcom(self.flux_result) if complete else None
        export = upload.export if upload else None
        output = lineage.export_output(
            self.s3_location,
            rows=upload.rows if upload else None,
            size=upload.bytes if upload else None,
            columns=lineage.export_columns(export.columns if export else None),
            source=inputs[0] if len(inputs) == 1 else None,
        )
        return inputs, [output]

    def run(self, context) -> dict:
        started = time.monotonic()
        if self.part:
            self.table = self.schema = None
            self.sql, self.count_sql = self.part["sql"], self.part.get("count_sql")
        self.prepare()
        final, _ = self._paths(context)
        pipe = final.with_name(final.name + ".fifo")
        pipe.unlink(missing_ok=True)
        os.mkfifo(pipe, 0o600)
        outcome: dict = {}
        reader_done = threading.Event()

        def export() -> None:
            try:
                outcome["rows"], outcome["tool"] = self.run_engine(str(pipe))
            except BaseException as exc:  # handed to the main thread, which decides
                outcome["error"] = exc
            finally:
                # The engine may have failed before opening the pipe: open and close it once a reader is
                # there, so the reader sees EOF instead of waiting forever.
                while not reader_done.is_set():
                    try:
                        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
                        break
                    except FileNotFoundError:
                        break
                    except OSError:  # ENXIO: the reader has not opened the pipe yet
                        time.sleep(0.02)

        def before_publish(encoded_rows: int) -> ExportResult:
            exporter.join()
            if "error" in outcome:
                raise outcome["error"]
            if encoded_rows != outcome["rows"]:
                raise self._fail(
                    f"the export reported {outcome['rows']} rows but {encoded_rows} arrived through the pipe",
                    ErrorClass.DATA,
                )
            self.check_count(outcome["rows"])
            return dataclasses.replace(info, rows=outcome["rows"], tool=outcome["tool"])

        try:
            settings = ChunkSettings(**self.upload_options)
        except TypeError as exc:
            raise self._fail(f"upload_options: {exc}") from None
        self._upload = S3ChunkUploadHook(self.aws_conn_id, dataset=self.dataset, settings=settings)
        info = self.export_info(path=None, rows=None, size=None, tool="", seconds=0)
        exporter = threading.Thread(target=export, name="flux-export", daemon=True)
        self.log.info(
            "data set %s: streaming %s engine -> encoder -> s3 via %s", self.dataset, self.chosen_engine, pipe
        )
        exporter.start()
        try:
            with open(pipe, "rb") as stream:
                result = self._upload.upload_stream(
                    stream,
                    info,
                    self.s3_location,
                    context["ti"].run_id,
                    before_publish=before_publish,
                    part=self.part["name"] if self.part else None,
                    prefix=self.part["prefix"] if self.part else None,
                    day=context.get(DAY_VARIABLE),
                    attempt=try_number(context),
                )
        except BaseException:
            exporter.join(timeout=0.5)
            if not exporter.is_alive() and "error" in outcome:
                raise outcome["error"] from None  # the export failed first: its error says why
            self.on_kill()  # the upload failed: stop the export, nobody reads the pipe any more
            exporter.join(timeout=30)
            raise
        finally:
            reader_done.set()
            pipe.unlink(missing_ok=True)
        export = self.export_info(
            path=None,
            rows=outcome["rows"],
            size=result.raw_bytes,
            tool=outcome["tool"],
            seconds=time.monotonic() - started,
        )
        return dataclasses.replace(result, export=export).to_xcom()

    def on_kill(self) -> None:
        super().on_kill()
        if self._upload is not None:
            self._upload.abort()
