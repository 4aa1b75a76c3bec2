"""One run of a data set's DAG, stage by stage: rows exported, uploaded, staged and written.

The DAG factory names a data set's tasks with the ids below; the dashboard API
and the demo read a run's step records (:mod:`flux_provider.handoffs`) through
:func:`stage_rows`, which is the one place that knows which task hands what.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flux_provider.handoffs import ExportResult, TransformResult, UploadResult

#: Task ids of a factory-built data set DAG (a split one: plan -> export_upload (mapped) -> publish -> ...).
EXPORT, UPLOAD, EXPORT_UPLOAD, TRANSFORM, REFRESH = "export", "upload", "export_upload", "transform", "refresh"
PLAN, PUBLISH = "plan", "publish"


def stage_rows(xcom: Callable[[str], Any]) -> dict:
    """Rows at each stage of one run, from ``xcom(task_id)`` (that task's return value, or None).

    ``reconciled``: export rows = upload rows = staging rows (None before the transform ran);
    ``parts``: rows per part of a split run (``[]`` otherwise).
    """
    upload = UploadResult.from_json(xcom(PUBLISH) or xcom(EXPORT_UPLOAD) or xcom(UPLOAD))
    if upload is not None and upload.part:  # one part of a split run that is not published yet
        upload = None
    export = (upload.export if upload else None) or ExportResult.from_json(xcom(EXPORT))
    transform = TransformResult.from_json(xcom(TRANSFORM))
    exported = export.rows if export else None
    uploaded = upload.rows if upload else None
    staged = transform.staging_rows if transform else None
    return {
        "exported": exported,
        "uploaded": uploaded,
        "staged": staged,
        "target": transform.target_rows if transform else None,
        "partitions": len(transform.partitions) if transform else 0,
        "reconciled": None if staged is None else exported == uploaded == staged,
        "parts": [{"part": p.part, "rows": p.rows} for p in upload.parts] if upload else [],
    }


def stage_times(run_start: str, task_instances: list[dict]) -> list[dict]:
    """Where one run's time went, task by task, from Airflow's own dates (the REST API's task instances):

    * ``gap``: from the end of the tasks it waited for (or the run's start) until the scheduler queued it;
    * ``queued``: from queued until the task process started (executor slot, process start-up);
    * ``ran``: the task itself (its start to its end).

    Tasks in start order; a mapped task's instances one row each (``task[index]``); times in seconds."""
    import datetime as dt

    def at(text: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(text) if text else None

    rows, ended = [], [at(run_start)]
    for ti in sorted(task_instances, key=lambda t: t.get("start_date") or ""):
        queued, start, end = at(ti.get("queued_when")), at(ti.get("start_date")), at(ti.get("end_date"))
        if start is None:
            continue
        before = max((e for e in ended if e is not None and e <= (queued or start)), default=None)
        name = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
        rows.append(
            {
                "task": name,
                "gap": round(((queued or start) - before).total_seconds(), 2) if before else None,
                "queued": round((start - queued).total_seconds(), 2) if queued else None,
                "ran": round((end - start).total_seconds(), 2) if end else None,
            }
        )
        ended.append(end)
    return rows
