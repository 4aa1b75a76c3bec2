"""Where a run's time went: scheduling gaps, queue waits and the tasks themselves, from Airflow's dates."""

from __future__ import annotations

from flux_provider.run_report import stage_times


def ti(task_id, queued, start, end, map_index=-1):
    day = "2026-12-01T10:00:"
    return {
        "task_id": task_id,
        "map_index": map_index,
        "queued_when": day + queued + "+00:00",
        "start_date": day + start + "+00:00",
        "end_date": day + end + "+00:00",
    }


def test_each_task_gets_its_gap_queue_wait_and_run_time():
    tis = [ti("transform", "21", "24", "40"), ti("export_upload", "02", "05", "15")]
    rows = stage_times("2026-12-01T10:00:00+00:00", tis)
    assert rows == [
        {"task": "export_upload", "gap": 2.0, "queued": 3.0, "ran": 10.0},
        {"task": "transform", "gap": 6.0, "queued": 3.0, "ran": 16.0},
    ]


def test_mapped_parts_are_rows_of_their_own_and_a_task_that_never_started_is_left_out():
    tis = [ti("export_upload", "02", "05", "15", 0), ti("export_upload", "02", "06", "12", 1)]
    tis.append({"task_id": "publish", "map_index": -1, "queued_when": None, "start_date": None, "end_date": None})
    rows = stage_times("2026-12-01T10:00:00+00:00", tis)
    assert [r["task"] for r in rows] == ["export_upload[0]", "export_upload[1]"]
    assert rows[1] == {"task": "export_upload[1]", "gap": 2.0, "queued": 4.0, "ran": 6.0}
