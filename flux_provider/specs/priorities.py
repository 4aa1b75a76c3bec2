"""Task priorities for a fleet: a run that has started finishes before other runs start (pure, no Airflow).

Airflow's default weight rule (``downstream``) ranks a task by the number of tasks
below it, so every run's first task outranks every run's later tasks: 300 runs
started at once all export before any of them transforms, and no run lands for
half an hour. Flux tasks use the ``absolute`` rule with weights from here instead:

    weight = stage x STAGE + urgency

* ``stage`` is the task's depth in its DAG (the first task 1, the next 2, ...): any
  run's transform outranks any run's export, so when the workers are the
  bottleneck, a freed slot goes to a run that is under way.
* ``urgency`` (0-999) orders the data sets inside one stage: the spec's
  ``<schedule priority="0-9">`` first (x 100), then the slack of its ``<deadline>``
  (the tighter, the higher; no deadline: 0).

Airflow breaks the remaining ties by the runs' dates: runs of one stage start in
the order they were due.
"""

from __future__ import annotations

import datetime as dt

from flux_provider.specs.model import DatasetSpec

#: A stage outranks every urgency of the stage below it.
STAGE = 1000
#: The deadline's part of the urgency: one step per this many minutes of slack, at most 99 steps.
SLACK_STEP_MINUTES = 15


def deadline_slack_minutes(spec: DatasetSpec) -> float | None:
    """Minutes between when the data set's run is due and its ``<deadline>``, None without a deadline.

    ``withinMinutes`` is its own slack; ``finishBy`` counts from the cron's first tick of a day (in the
    deadline's time zone), or from midnight for a data set without a cron."""
    deadline = spec.deadline
    if deadline is None:
        return None
    if deadline.within_minutes is not None:
        return deadline.within_minutes
    hour, minute = (int(x) for x in deadline.finish_by.split(":"))
    due = _first_tick_minutes(spec.schedule.cron)
    finish = hour * 60 + minute
    return float((finish - due) % (24 * 60)) if finish != due else 24 * 60.0


def _first_tick_minutes(cron: str | None) -> int:
    """Minutes after midnight of the cron's first tick on a day (0 without a cron or for a preset)."""
    if not cron or cron.startswith("@"):
        return 0
    from croniter import croniter

    day = dt.datetime(2026, 1, 5)  # a Monday
    tick = croniter(cron, day - dt.timedelta(seconds=1)).get_next(dt.datetime)
    return tick.hour * 60 + tick.minute if tick.date() == day.date() else 0


def urgency(spec: DatasetSpec) -> int:
    """0-999: ``priority`` x 100, plus 1-99 for a deadline (99 within 15 minutes of slack, 1 from a day)."""
    slack = deadline_slack_minutes(spec)
    term = 0 if slack is None else max(1, 99 - int(slack // SLACK_STEP_MINUTES))
    return spec.schedule.priority * 100 + term


def stages(upstream: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """``task id -> depth`` (1 for a task without upstream, else one more than its deepest upstream), for
    tasks given in dependency order."""
    depth: dict[str, int] = {}
    for task_id, ups in upstream.items():
        depth[task_id] = 1 + max((depth[u] for u in ups), default=0)
    return depth


def weights(upstream: dict[str, tuple[str, ...]], spec: DatasetSpec) -> dict[str, int]:
    """``task id -> priority_weight`` for the ``absolute`` weight rule (see the module)."""
    level = urgency(spec)
    return {task_id: depth * STAGE + level for task_id, depth in stages(upstream).items()}


__all__ = ["STAGE", "deadline_slack_minutes", "stages", "urgency", "weights"]
