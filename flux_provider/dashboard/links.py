"""Where things are in the Airflow UI: a run's page and a task try's log."""

from __future__ import annotations

from urllib.parse import quote


def dag_url(dag_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}"


def run_url(dag_id: str, run_id: str) -> str:
    return f"{dag_url(dag_id)}/runs/{quote(run_id, safe='')}"


def log_url(dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int | None = None) -> str:
    """The task instance's page in the Airflow UI (its log), at ``try_number``."""
    url = f"{run_url(dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    return url + (f"?try_number={try_number}" if try_number else "")
