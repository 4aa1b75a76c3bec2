"""Business calendars: a source's holidays and maintenance windows, in its own time zone (pure, clock passed in).

A spec's ``<calendar>`` (or a shared calendar file it names) lists

* holidays (``<holiday date="2026-12-25"/>``): no scheduled run of the data set is due on that local day;
* maintenance windows, weekly (``<window days="sun" start="01:00" end="03:00"/>``) or on a date
  (``<window date="2026-12-31" start="22:00" end="23:30"/>``); an end before the start crosses midnight.

The timetable (:mod:`flux_provider.specs.timetable`) moves a run due inside a window to the window's end and
skips holidays; the throttle controller holds the data set's pool at 0 during a window and restores it
after. Times are wall-clock times of the calendar's zone, daylight saving included.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: How the controller's limit changes for a window begin (the controller finds its own holds by it).
WINDOW_REASON = "maintenance window"


@dataclass(frozen=True)
class Window:
    start: str  # HH:MM, local
    end: str  # HH:MM, local; before start: the next day
    days: tuple[int, ...] = ()  # 0 = Monday; with date None: every such day
    date: str | None = None  # YYYY-MM-DD: that day only
    reason: str = ""


@dataclass(frozen=True)
class Calendar:
    timezone: str = "UTC"
    holidays: tuple[str, ...] = ()
    windows: tuple[Window, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Calendar | None:
        if not text:
            return None
        data = json.loads(text)
        windows = tuple(Window(**{**w, "days": tuple(w.get("days") or ())}) for w in data.get("windows") or ())
        return cls(timezone=data.get("timezone", "UTC"), holidays=tuple(data.get("holidays") or ()), windows=windows)


@dataclass(frozen=True)
class Interval:
    start: dt.datetime  # UTC
    end: dt.datetime  # UTC
    reason: str = ""


def _clock(text: str) -> dt.time:
    hour, minute = (int(x) for x in text.split(":"))
    return dt.time(hour, minute)


def _occurrences(window: Window, day: dt.date, zone: ZoneInfo) -> Interval | None:
    """The window's interval that starts on local ``day``, if it has one."""
    if window.date is not None:
        if day.isoformat() != window.date:
            return None
    elif window.days and day.weekday() not in window.days:
        return None
    start_clock, end_clock = _clock(window.start), _clock(window.end)
    start = dt.datetime.combine(day, start_clock, tzinfo=zone)
    end_day = day if end_clock > start_clock else day + dt.timedelta(days=1)
    end = dt.datetime.combine(end_day, end_clock, tzinfo=zone)
    return Interval(start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc), window.reason)


def windows_between(calendar: Calendar, start: dt.datetime, end: dt.datetime) -> list[Interval]:
    """Every window interval that overlaps [start, end), in time order."""
    zone = ZoneInfo(calendar.timezone)
    first = start.astimezone(zone).date() - dt.timedelta(days=1)  # a window from the day before may reach in
    last = end.astimezone(zone).date()
    found = []
    day = first
    while day <= last:
        for window in calendar.windows:
            interval = _occurrences(window, day, zone)
            if interval and interval.start < end and interval.end > start:
                found.append(interval)
        day += dt.timedelta(days=1)
    return sorted(found, key=lambda i: i.start)


def window_at(calendar: Calendar | None, moment: dt.datetime) -> Interval | None:
    """The window ``moment`` falls in (the one ending last if several overlap), or None."""
    if calendar is None or not calendar.windows:
        return None
    inside = [w for w in windows_between(calendar, moment, moment + dt.timedelta(seconds=1)) if w.start <= moment]
    return max(inside, key=lambda w: w.end) if inside else None


def is_holiday(calendar: Calendar | None, moment: dt.datetime) -> bool:
    if calendar is None or not calendar.holidays:
        return False
    return moment.astimezone(ZoneInfo(calendar.timezone)).date().isoformat() in calendar.holidays


def describe(calendar: Calendar, interval: Interval) -> str:
    """The controller's reason for holding a pool at 0: ``maintenance window until 03:00 Europe/Amsterdam``."""
    local_end = interval.end.astimezone(ZoneInfo(calendar.timezone))
    return f"{WINDOW_REASON} until {local_end:%Y-%m-%d %H:%M} {calendar.timezone}" + (
        f": {interval.reason}" if interval.reason else ""
    )
