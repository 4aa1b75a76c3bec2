"""The dashboard's one read of the runs' stage XComs (on SQLite with Airflow's tables): only the runs asked
for, though other DAGs have runs of the same ids, and without the columns and statements the page never
shows, whether Airflow stored the value as JSON text or as a JSON object."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from flux_provider.dashboard import queries
from flux_provider.run_report import stage_rows


def upload(dataset: str, rows: int) -> dict:
    column = {"name": "id", "type_name": "int", "system_type_name": "int"}
    return {
        "record": "flux.upload/1",
        **{"dataset": dataset, "bucket": "b", "prefix": "p/", "manifest": "p/_manifest.json", "rows": rows},
        "columns": [column],
        "export": {"record": "flux.export/1", "rows": rows, "columns": [column]},
    }


def test_only_the_asked_runs_are_read_and_what_the_page_does_not_show_is_left_out(engine):
    from airflow.models.xcom import XComModel

    now = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    values = [
        ("flux_a", "scheduled__2026-12-01", XComModel.serialize_value(upload("a", 5))),  # JSON text
        ("flux_b", "scheduled__2026-12-01", upload("b", 7)),  # a JSON object (the Execution API's way)
        ("flux_a", "scheduled__2026-11-30", XComModel.serialize_value(upload("a", 3))),
    ]
    with engine.begin() as conn:
        conn.execute(
            XComModel.__table__.insert(),
            [
                dict(
                    dag_run_id=i,
                    task_id="export_upload",
                    map_index=-1,
                    key="return_value",
                    dag_id=d,
                    run_id=r,
                    value=v,
                    timestamp=now,
                )
                for i, (d, r, v) in enumerate(values, 1)
            ],
        )
    asked = [("flux_a", "scheduled__2026-12-01"), ("flux_b", "scheduled__2026-12-01")]
    with Session(engine) as session:
        read = queries.stage_values(session, asked)
    assert sorted(read) == sorted(asked)  # flux_a's other run and no flux_b-with-a's-id pair
    assert (
        "columns" not in read[asked[0]]["export_upload"] and "columns" not in read[asked[1]]["export_upload"]["export"]
    )
    assert [stage_rows(read[run].get)["uploaded"] for run in asked] == [5, 7]
