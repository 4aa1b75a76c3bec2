"""Timetables that respect a data set's business calendar (:mod:`flux_provider.calendars`).

A run due on a holiday (the local date of the calendar's zone) is skipped; a run due inside a maintenance
window runs when the window ends, keeping its own logical date and data interval (the data it loads does not
change, only when). Two flavours, as the DAG factory picks for a cron schedule: :class:`CalendarCronTrigger`
(Airflow 3's default for a cron, runs at the cron times) and :class:`CalendarCronDataInterval` (runs with a
data interval, for time-split exports). The plugin registers both, so the scheduler and the UI know them.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.timetables.base import DataInterval
from airflow.timetables.interval import CronDataIntervalTimetable
from airflow.timetables.trigger import CronTriggerTimetable

from flux_provider import calendars
from flux_provider.calendars import Calendar

#: Holidays in a row a timetable steps over before it gives up (a calendar of only holidays).
MAX_SKIPS = 400


class _CalendarMixin:
    calendar: Calendar | None = None

    def _with_calendar(self, calendar: Calendar | None) -> None:
        self.calendar = calendar
        if calendar is not None:
            self.description = (
                f"{self.description}; not in {len(calendar.windows)} maintenance window(s), "
                f"skipping {len(calendar.holidays)} holiday(s) ({calendar.timezone})"
            )

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
            if calendars.is_holiday(self.calendar, info.run_after):
                info = super().next_dagrun_info(
                    last_automated_data_interval=info.data_interval, restriction=restriction
                )
                continue
            window = calendars.window_at(self.calendar, info.run_after)
            if window is not None:
                return info._replace(run_after=pendulum.instance(window.end))
            return info
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
