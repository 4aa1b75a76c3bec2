"""Timetables that respect a data set's business calendar (:mod:`flux_provider.calendars`).

A run due on a holiday (the local date of the calendar's zone) is skipped; a run due inside a maintenance
window runs when the window ends, keeping its own logical date and data interval (the data it loads does not
change, only when). Two flavours, as the DAG factory picks for a cron schedule: :class:`CalendarCronTrigger`
(Airflow 3's default for a cron, runs at the cron times) and :class:`CalendarCronDataInterval` (runs with a
data interval, for time-split exports); a partitioned data set's cron is a :class:`PartitionCron`, with or
without a calendar. The plugin registers all three, so the scheduler and the UI know them.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow._shared.timezones.timezone import parse_timezone
from airflow.timetables.base import DagRunInfo, DataInterval
from airflow.timetables.interval import CronDataIntervalTimetable
from airflow.timetables.trigger import CronPartitionTimetable, CronTriggerTimetable

from flux_provider import calendars
from flux_provider.calendars import Calendar
from flux_provider.specs import partitions

#: Holidays in a row a timetable steps over before it gives up (a calendar of only holidays).
MAX_SKIPS = 400


def _described(description: str, calendar: Calendar | None) -> str:
    if calendar is None:
        return description
    return (
        f"{description}; not in {len(calendar.windows)} maintenance window(s), "
        f"skipping {len(calendar.holidays)} holiday(s) ({calendar.timezone})"
    )


def _on_calendar(calendar: Calendar | None, info: DagRunInfo) -> DagRunInfo | None:
    """``info`` under the calendar's rule: None on a holiday, at the window's end inside a window."""
    if calendars.is_holiday(calendar, info.run_after):
        return None
    window = calendars.window_at(calendar, info.run_after)
    return info._replace(run_after=pendulum.instance(window.end)) if window is not None else info


class _CalendarMixin:
    calendar: Calendar | None = None

    def _with_calendar(self, calendar: Calendar | None) -> None:
        self.calendar = calendar
        self.description = _described(self.description, calendar)

    def next_dagrun_info(self, *, last_automated_data_interval, restriction):
        info = super().next_dagrun_info(
            last_automated_data_interval=last_automated_data_interval, restriction=restriction
        )
        last = last_automated_data_interval
        moved = calendars.window_at(self.calendar, last.end) if last is not None else None
        if info is not None and moved is not None and info.run_after <= moved.end:
            # the last run was due in a window and ran at its end: it stands for the fire at that end too
            # (two runs at one moment would share a run id)
            end = pendulum.instance(moved.end)
            info = super().next_dagrun_info(
                last_automated_data_interval=DataInterval(end, end), restriction=restriction
            )
        for _ in range(MAX_SKIPS):
            if info is None:
                return None
            moved = _on_calendar(self.calendar, info)
            if moved is not None:
                return moved
            info = super().next_dagrun_info(last_automated_data_interval=info.data_interval, restriction=restriction)
        return None

    def serialize(self) -> dict[str, Any]:
        return {**super().serialize(), "calendar": self.calendar.to_json() if self.calendar else None}

    @classmethod
    def deserialize(cls, data: dict[str, Any]):
        timetable = super().deserialize(data)
        timetable._with_calendar(Calendar.from_json(data.get("calendar")))
        return timetable


class CalendarCronTrigger(_CalendarMixin, CronTriggerTimetable):
    """A cron schedule (runs at the cron times) that skips holidays and waits out maintenance windows."""

    def __init__(self, cron: str, *, timezone, calendar: Calendar | None = None, **kwargs):
        super().__init__(cron, timezone=timezone, **kwargs)
        self._with_calendar(calendar)


class CalendarCronDataInterval(_CalendarMixin, CronDataIntervalTimetable):
    """A cron schedule with data intervals that skips holidays and waits out maintenance windows."""

    def __init__(self, cron: str, timezone, calendar: Calendar | None = None):
        super().__init__(cron, timezone)
        self._with_calendar(calendar)


class PartitionCron(CronPartitionTimetable):
    """A cron whose runs each load one partition of the data set: a day (key ``2026-12-01``) or an hour
    (``2026-12-01T05``) in the cron's time zone, the period the tick falls in.

    With a business calendar a tick on a holiday makes no run, and a tick inside a maintenance window runs
    at the window's end, still for its own partition. A backfill (the UI's, or ``POST /api/v2/backfills``)
    of a date range makes one run per partition whose period lies in it, both ends' days included for a
    day grain, with the same calendar rules.
    """

    def __init__(
        self,
        cron: str,
        *,
        timezone,
        grain: str = partitions.DAY,
        calendar: Calendar | None = None,
        run_immediately: bool = False,
    ):
        super().__init__(
            cron, timezone=timezone, key_format=partitions.KEY_FORMATS[grain], run_immediately=run_immediately
        )
        self.grain, self.calendar = grain, calendar
        self.description = _described(f"{self.description}; one run per {grain} partition", calendar)

    def _period_start(self, moment) -> pendulum.DateTime:
        local = pendulum.instance(moment).in_timezone(self._timezone)
        return local.start_of(self.grain).in_timezone("UTC")

    def _get_partition_info(self, run_date):
        start = self._period_start(run_date)
        return start, self._format_key(start)

    def run_info_from_dag_run(self, *, dag_run) -> DagRunInfo:
        """A run stands at its partition's tick, even when a maintenance window moved when it ran."""
        info = super().run_info_from_dag_run(dag_run=dag_run)
        if info.partition_date is None:
            return info
        return info._replace(run_after=self._align_to_next(pendulum.instance(info.partition_date)))

    def next_dagrun_info_v2(self, *, last_dagrun_info, restriction):
        info = super().next_dagrun_info_v2(last_dagrun_info=last_dagrun_info, restriction=restriction)
        for _ in range(MAX_SKIPS):
            if info is None:
                return None
            moved = _on_calendar(self.calendar, info)
            if moved is not None:
                return moved
            info = super().next_dagrun_info_v2(last_dagrun_info=info, restriction=restriction)
        return None

    def iter_partition_dagrun_infos(self, *, earliest, latest):
        first, last = self.localize_partition_datetime(earliest), self.localize_partition_datetime(latest)
        if self.grain == partitions.DAY:  # the range's days, both included, whatever the hours given
            first = self._period_start(first)
            last = self._period_start(last).in_timezone(self._timezone).add(days=1).subtract(microseconds=1)
        tick = self._align_to_next(first)
        while tick <= last:
            start = self._period_start(tick)
            info = DagRunInfo(
                run_after=tick, data_interval=None, partition_date=start, partition_key=self._format_key(start)
            )
            moved = _on_calendar(self.calendar, info)
            if moved is not None:
                yield moved
            tick = self._get_next(tick)

    def serialize(self) -> dict[str, Any]:
        return {
            **super().serialize(),
            "grain": self.grain,
            "calendar": self.calendar.to_json() if self.calendar else None,
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]):
        from airflow.serialization.decoders import decode_run_immediately

        return cls(
            data["expression"],
            timezone=parse_timezone(data["timezone"]),
            grain=data.get("grain", partitions.DAY),
            calendar=Calendar.from_json(data.get("calendar")),
            run_immediately=decode_run_immediately(data.get("run_immediately", False)),
        )
