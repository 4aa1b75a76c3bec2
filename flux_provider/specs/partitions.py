"""A data set's partitions: Airflow asset partitions, one run per day (or hour) of data.

A data set is *partitioned* when its runs each load one partition whose key is a day (``2026-12-01``) or an
hour (``2026-12-01T05``). Its scheduled runs come from a partition timetable, its Asset events carry the key,
and ``{{ flux_day }}`` is the key's day. The grain is decided here, from the spec alone:

* ``<schedule grain="day|hour|none">`` says it;
* without it, a cron data set is partitioned by day when a Hive partition's value is ``{{ flux_day }}``
  (the data set writes the run's day), and is not partitioned otherwise;
* a data set ``<after>`` others (``require="partition"``, the default) is partitioned when at least one of
  them is, with the coarsest of their grains (day over hour); it waits for *those* to write its partition.
  An upstream that is not partitioned (a snapshot dimension, overwritten whole) is read as it is when the
  run starts: it does not gate the run, because it has no partition to match;
* ``require="update"`` keeps Airflow's plain Asset schedule: a run starts once each upstream has a new
  event, whatever day it wrote, and is not partitioned.

A time split (``<split every=...>``) exports its run's data interval, which partitioned runs do not have: it
is not partitioned (``grain`` on it is a spec error).

This module imports no Airflow: the plan and ``specs check`` use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from flux_provider.run_day import VARIABLE as DAY_VARIABLE

DAY, HOUR = "day", "hour"
GRAINS = (DAY, HOUR)
#: How a partition key is written for each grain (``strftime``).
KEY_FORMATS = {DAY: "%Y-%m-%d", HOUR: "%Y-%m-%dT%H"}
_COARSER = {DAY: 1, HOUR: 0}
_WRITES_THE_DAY = re.compile(r"\{\{\s*" + DAY_VARIABLE + r"\s*\}\}")


@dataclass(frozen=True)
class Upstream:
    """A data set ``<after>`` names, as the waiting one sees it: its grain (None: not partitioned)."""

    name: str
    grain: str | None


class GrainError(ValueError):
    """A spec whose partitions cannot work; ``fix`` says what to write instead."""

    def __init__(self, message: str, fix: str, element: str = "schedule"):
        super().__init__(message)
        self.message, self.fix, self.element = message, fix, element


def _check_once_per_period(cron: str, grain: str) -> None:
    """A cron that fires twice in one partition would load that partition twice, each time the whole."""
    import datetime as dt

    from croniter import croniter

    ticks = croniter(cron, dt.datetime(2026, 1, 1))
    periods = [ticks.get_next(dt.datetime).strftime(KEY_FORMATS[grain]) for _ in range(48)]  # their keys
    repeated = next((p for p, q in zip(periods, periods[1:]) if p == q), None)
    if repeated:
        raise GrainError(
            f"the cron {cron!r} fires more than once in the {grain} {repeated}, and each run would load that "
            f"whole {grain} partition",
            fix=f"fire at most once a {grain}, or give <schedule> the grain of the cron (hour)",
            element="cron",
        )


def own_grain(spec) -> str | None:
    """The grain of a data set that does not run ``<after>`` others (see the module)."""
    schedule, split = spec.schedule, spec.source.split
    if schedule.grain == "none":
        return None
    time_split = split is not None and split.every
    if schedule.grain:
        if time_split:
            raise GrainError(
                f"a split every {split.every} exports each run's data interval, and partitioned runs have none",
                fix='remove grain= from <schedule> (or grain="none"), or split by parts=',
                element="split",
            )
        if not schedule.cron:  # manual runs only (own_grain is not asked about <after> data sets)
            raise GrainError(
                f'grain="{schedule.grain}" needs runs that Airflow creates per partition',
                fix="give the data set a <cron> or <after>, or remove grain=",
            )
        _check_once_per_period(schedule.cron, schedule.grain)
        return schedule.grain
    if not schedule.cron or schedule.cron.startswith("@once") or time_split:
        return None
    if not any(p.value and _WRITES_THE_DAY.search(p.value) for p in spec.hive.partitions):
        return None
    _check_once_per_period(schedule.cron, DAY)
    return DAY


def grain_after(spec, upstreams: list[Upstream]) -> str | None:
    """The grain of a data set ``<after>`` ``upstreams`` (see the module)."""
    schedule = spec.schedule
    if schedule.require == "update" or schedule.grain == "none":
        return None
    partitioned = [u for u in upstreams if u.grain]
    if not partitioned:
        return None
    grain = schedule.grain or max((u.grain for u in partitioned), key=_COARSER.__getitem__)
    finer = [u.name for u in partitioned if _COARSER[u.grain] > _COARSER[grain]]
    if finer:
        raise GrainError(
            f"an {grain}ly data set cannot wait for the day partitions of {', '.join(finer)}",
            fix='make this data set grain="day", or have it run <after> hourly data sets only',
        )
    return grain


def resolve(spec, load: Callable[[str], object | None], _seen: frozenset[str] = frozenset()) -> tuple:
    """``(grain, upstreams)`` of ``spec``: its grain and each data set it waits for with that one's grain.

    ``load(name)`` gives the spec of a data set ``<after>`` names (None if it has none or it is broken: it
    counts as not partitioned, and reports itself). A chain of ``<after>`` is followed to its sources."""
    if not spec.schedule.after:
        return own_grain(spec), ()
    upstreams = []
    for name in spec.schedule.after:
        other = load(name) if name not in _seen else None
        grain = resolve(other, load, _seen | {spec.name})[0] if other is not None else None
        upstreams.append(Upstream(name, grain))
    return grain_after(spec, upstreams), tuple(upstreams)


__all__ = [
    "DAY",
    "GRAINS",
    "HOUR",
    "KEY_FORMATS",
    "GrainError",
    "Upstream",
    "grain_after",
    "own_grain",
    "resolve",
]
