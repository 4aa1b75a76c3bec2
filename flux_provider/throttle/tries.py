"""The tries of Airflow's pools, read once from ``task_instance`` and ``task_instance_history``.

A task instance's earlier tries live in ``task_instance_history``; its current try
lives in ``task_instance`` (and, once retried, in both). :func:`pool_tries` reads
both tables with the same columns and filter and keeps each try once, the current
copy winning: the controller (what ended, what ran at once) and the dashboard's
timeline (running and queued over time) ask it instead of each scanning the tables.
"""

from __future__ import annotations

from collections.abc import Callable

#: A try's identity: (dag_id, run_id, task_id, map_index, try_number).
KEY = ("dag_id", "run_id", "task_id", "map_index", "try_number")


def pool_tries(session, columns: tuple[str, ...], where: Callable) -> dict[tuple, object]:
    """``try key -> row`` (the key's columns, then ``columns``) of the tries ``where(model)`` selects, on
    both tables; a try in both is the ``task_instance`` row."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.taskinstancehistory import TaskInstanceHistory as TIH
    from sqlalchemy import select

    tries = {}
    for model in (TIH, TI):  # the current try last: it wins over its archived copy
        query = select(*(getattr(model, c) for c in (*KEY, *columns))).where(where(model))
        for row in session.execute(query):
            tries[tuple(row[: len(KEY)])] = row
    return tries


__all__ = ["KEY", "pool_tries"]
