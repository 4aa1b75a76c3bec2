"""The day of a run's data: ``{{ flux_day }}`` (``YYYY-MM-DD``), defined for every kind of run.

Airflow 3 gives no logical date to manual runs triggered with
``logical_date: null`` nor to Asset-triggered runs, so ``{{ ds }}`` is undefined
there. Every flux operator adds ``flux_day`` to its template context instead,
decided in this order:

1. the trigger's conf ``{"day": "2026-11-27"}`` (a manual run of one day);
2. the run's partition key (a partitioned data set's scheduled, backfill,
   partition-triggered or manual run: :mod:`flux_provider.specs.partitions`),
   its day for an hourly key; a conf day that names another day is refused;
3. an Asset-triggered run: the newest partition key, else ``day``, the
   triggering events carry (a flux data set's final task records both), else
   the newest event's time in the data set's time zone;
4. a run with a data interval (scheduled, or triggered with a logical date): the
   start of the interval in the data set's time zone;
5. otherwise the time the run was queued (``run_after``) in the data set's time zone.

``{{ flux_partition }}`` is the partition the run loads (:func:`run_partition_key`): the
run's partition key, or the conf day of a day-partitioned data set's manual run.
"""

from __future__ import annotations

import datetime as dt
import re

from flux_provider.error_taxonomy import ErrorClass, FluxError

VARIABLE = "flux_day"
PARTITION_VARIABLE = "flux_partition"
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


def _config_error(message: str, dataset: str | None) -> FluxError:
    """A run whose trigger cannot be rendered: ``config``, which an operator fails at once, never retried."""
    return FluxError(message, error_class=ErrorClass.CONFIG, dataset=dataset, step="render")


def conf_day(value, *, dataset: str | None = None) -> str:
    """A ``day`` given in a trigger's conf, checked."""
    text = str(value)
    try:
        if _DAY.match(text):
            dt.date.fromisoformat(text)
            return text
    except ValueError:
        pass
    raise _config_error(
        f"the run's conf gives day={value!r}, which is not a date; trigger with "
        '{"day": "YYYY-MM-DD"} or without a day',
        dataset,
    )


def _local_day(moment, timezone) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    if timezone is not None and moment.tzinfo is not None:
        moment = moment.astimezone(timezone)
    return moment.date().isoformat()


def context_getter(context):
    """``context.get``, or a getter of nothing for a context that has none (an operator called directly)."""
    return context.get if hasattr(context, "get") else (lambda key, default=None: default)


def _partition_key(dag_run) -> str | None:
    key = getattr(dag_run, "partition_key", None)
    return key if isinstance(key, str) and key else None


def _conf_day(dag_run, key: str | None, dataset: str | None) -> str | None:
    """The run's conf ``day``, checked, and refused if it is not the day of the run's partition ``key``."""
    conf = getattr(dag_run, "conf", None) or {}
    day = conf_day(conf["day"], dataset=dataset) if conf.get("day") is not None else None
    if key is not None and day is not None and key[:10] != day:
        raise _config_error(
            f"the run is for partition {key!r} and its conf gives day={day!r}; trigger with one of them", dataset
        )
    return day


def run_partition_key(context, grain: str | None, day: str, *, dataset: str | None = None) -> str | None:
    """The partition key the run of ``context`` loads, for a data set partitioned by ``grain`` (else None).

    ``day`` is the run's ``flux_day``: a day-partitioned data set's run without a partition key (a manual
    run, with or without a conf day) loads that day's partition, and its Asset event says so."""
    if grain is None:
        return None
    dag_run = context_getter(context)("dag_run")
    key = _partition_key(dag_run)
    if key is not None or grain == "day":
        return key or day
    if _conf_day(dag_run, key, dataset) is not None:
        raise _config_error(
            f"the data set has {grain} partitions and the run's conf gives a day ({day!r}); trigger it with "
            "partition_key (e.g. '2026-12-01T05'), or backfill the day's range",
            dataset,
        )
    return None


def _event_days(events, timezone) -> str | None:
    """The newest day the triggering Asset events name: partition key, else ``day`` extra, else time."""
    days, times = [], []
    try:
        for asset_events in events.values():
            for event in asset_events:
                extra = getattr(event, "extra", None) or {}
                key = getattr(event, "partition_key", None)
                if isinstance(key, str) and _DAY.match(key[:10]):
                    days.append(key[:10])
                elif isinstance(extra, dict) and extra.get("day") and _DAY.match(str(extra["day"])):
                    days.append(str(extra["day"]))
                if getattr(event, "timestamp", None) is not None:
                    times.append(event.timestamp)
    except (AttributeError, TypeError):  # not an Asset-triggered run
        return None
    if days:
        return max(days)
    return _local_day(max(times), timezone) if times else None


def run_day(context, timezone=None, *, dataset: str | None = None) -> str:
    """``flux_day`` for the run of ``context`` (see the module's docstring for the order)."""
    get = context_getter(context)
    dag_run = get("dag_run")
    key = _partition_key(dag_run)
    day = _conf_day(dag_run, key, dataset)
    if day is not None:
        return day
    if key is not None and _DAY.match(key[:10]):
        return key[:10]
    from_events = _event_days(get("triggering_asset_events") or {}, timezone)
    if from_events is not None:
        return from_events
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
            f"{text}. This run has no logical date (a manual run triggered without one, a run "
            f"triggered by an <after> data set, or a partitioned run): write {{{{ {VARIABLE} }}}}, which "
            f"every run has, or trigger with a logical date"
        )
    return (
        f"{text}. Fix the template in the spec (template variables: {VARIABLE}, {PARTITION_VARIABLE} (a "
        "partitioned data set's), staging, target, run, and Airflow's macros)"
    )
