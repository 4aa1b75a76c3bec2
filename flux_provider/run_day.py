"""The day of a run's data: ``{{ flux_day }}`` (``YYYY-MM-DD``), defined for every kind of run.

Airflow 3 gives no logical date to manual runs triggered with
``logical_date: null`` nor to Asset-triggered runs, so ``{{ ds }}`` is undefined
there. Every flux operator adds ``flux_day`` to its template context instead,
decided in this order:

1. the trigger's conf ``{"day": "2026-11-27"}`` (a manual run or a backfill of one day);
2. an Asset-triggered run: the newest ``day`` the triggering events carry (a flux
   data set's final task records its own ``flux_day`` in its Asset event), else
   the newest event's time in the data set's time zone;
3. a run with a data interval (scheduled, or triggered with a logical date): the
   start of the interval in the data set's time zone;
4. otherwise the time the run was queued (``run_after``) in the data set's time zone.
"""

from __future__ import annotations

import datetime as dt
import re

from flux_provider.errors import ErrorClass, FluxTerminalError

VARIABLE = "flux_day"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

#: Context variables an Asset-triggered or a ``logical_date: null`` run does not have.
NEEDS_LOGICAL_DATE = frozenset(
    {
        "ds",
        "ds_nodash",
        "ts",
        "ts_nodash",
        "ts_nodash_with_tz",
        "logical_date",
        "data_interval_start",
        "data_interval_end",
        "prev_ds",
        "prev_ds_nodash",
        "next_ds",
        "next_ds_nodash",
        "yesterday_ds",
        "tomorrow_ds",
        "prev_data_interval_start_success",
        "prev_data_interval_end_success",
    }
)


def conf_day(value, *, dataset: str | None = None) -> str:
    """A ``day`` given in a trigger's conf, checked."""
    text = str(value)
    try:
        if _DAY.match(text):
            dt.date.fromisoformat(text)
            return text
    except ValueError:
        pass
    raise FluxTerminalError(
        f"the run's conf gives day={value!r}, which is not a date; trigger with "
        '{"day": "YYYY-MM-DD"} or without a day',
        error_class=ErrorClass.CONFIG,
        dataset=dataset,
        step="render",
    )


def _local_day(moment, timezone) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    if timezone is not None and moment.tzinfo is not None:
        moment = moment.astimezone(timezone)
    return moment.date().isoformat()


def run_day(context, timezone=None, *, dataset: str | None = None) -> str:
    """``flux_day`` for the run of ``context`` (see the module's docstring for the order)."""
    get = context.get if hasattr(context, "get") else (lambda key, default=None: default)
    dag_run = get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    if conf.get("day") is not None:
        return conf_day(conf["day"], dataset=dataset)
    events = get("triggering_asset_events") or {}
    days, times = [], []
    try:
        for asset_events in events.values():
            for event in asset_events:
                extra = getattr(event, "extra", None) or {}
                if isinstance(extra, dict) and extra.get("day") and _DAY.match(str(extra["day"])):
                    days.append(str(extra["day"]))
                if getattr(event, "timestamp", None) is not None:
                    times.append(event.timestamp)
    except (AttributeError, TypeError):  # not an Asset-triggered run
        days, times = [], []
    if days:
        return max(days)
    if times:
        return _local_day(max(times), timezone)
    interval_start = get("data_interval_start") or getattr(dag_run, "data_interval_start", None)
    if interval_start is None and getattr(dag_run, "logical_date", None) is not None:
        interval_start = dag_run.logical_date
    if interval_start is not None:
        return _local_day(interval_start, timezone)
    queued = getattr(dag_run, "run_after", None) or getattr(dag_run, "start_date", None)
    return _local_day(queued or dt.datetime.now(dt.timezone.utc), timezone)


def render_error_text(exc: BaseException) -> str:
    """What to tell the user when a template of theirs does not render."""
    text = f"a template did not render: {type(exc).__name__}: {exc}"
    name = re.match(r"^'(\w+)' is undefined", str(exc))
    if name and name.group(1) in NEEDS_LOGICAL_DATE:
        return (
            f"{text}. This run has no logical date (a manual run triggered without one, or a run "
            f"triggered by an <after> data set): write {{{{ {VARIABLE} }}}}, which every run has, or "
            f"trigger with a logical date"
        )
    return (
        f"{text}. Fix the template in the spec (template variables: {VARIABLE}, staging, target, run, "
        "and Airflow's macros)"
    )
