"""Business calendars without a stack (an injected clock, no sleeps): windows weekly, dated and across
midnight in the source's zone (daylight saving included), holidays, the spec's <calendar> and a shared calendar
file, and the timetables that skip holidays and move a run due in a window to the window's end."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction

from flux_provider import calendars
from flux_provider.calendars import Calendar, Window
from flux_provider.specs import SpecError, load_spec
from flux_provider.specs.factory import build_dag
from flux_provider.specs.timetable import CalendarCronDataInterval, CalendarCronTrigger
from tests.support.specs import MINIMAL, write

UTC = dt.timezone.utc
AMS = "Europe/Amsterdam"
SUNDAY_NIGHT = Window(start="01:00", end="03:00", days=(6,), reason="source backup")
NEW_YEAR = Window(start="22:00", end="01:30", date="2026-12-31", reason="year end")


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_a_weekly_window_is_in_the_sources_zone_through_daylight_saving():
    calendar = Calendar(timezone=AMS, windows=(SUNDAY_NIGHT,))
    winter = calendars.window_at(calendar, utc(2026, 11, 29, 0, 30))  # Sunday 01:30 in Amsterdam (UTC+1)
    assert (winter.start, winter.end, winter.reason) == (
        utc(2026, 11, 29, 0, 0),
        utc(2026, 11, 29, 2, 0),
        "source backup",
    )
    summer = calendars.window_at(calendar, utc(2026, 6, 28, 0, 30))  # Sunday 02:30 there (UTC+2)
    assert (summer.start, summer.end) == (utc(2026, 6, 27, 23, 0), utc(2026, 6, 28, 1, 0))
    assert calendars.window_at(calendar, utc(2026, 11, 29, 2, 0)) is None  # the end is not inside
    assert calendars.window_at(calendar, utc(2026, 11, 30, 0, 30)) is None  # a Monday


def test_a_dated_window_may_cross_midnight_and_windows_between_lists_each_once():
    calendar = Calendar(timezone=AMS, windows=(SUNDAY_NIGHT, NEW_YEAR))
    late = calendars.window_at(calendar, utc(2027, 1, 1, 0, 0))  # 01:00 on New Year's day there
    assert (late.start, late.end) == (utc(2026, 12, 31, 21, 0), utc(2027, 1, 1, 0, 30))
    found = calendars.windows_between(calendar, utc(2026, 12, 26), utc(2027, 1, 4))
    assert [(w.start, w.reason) for w in found] == [
        (utc(2026, 12, 27, 0, 0), "source backup"),
        (utc(2026, 12, 31, 21, 0), "year end"),
        (utc(2027, 1, 3, 0, 0), "source backup"),
    ]
    assert calendars.describe(calendar, late) == "maintenance window until 2027-01-01 01:30 Europe/Amsterdam: year end"


def test_holidays_are_local_days_and_a_calendar_round_trips_as_stored():
    calendar = Calendar(timezone="America/New_York", holidays=("2026-12-25",), windows=(SUNDAY_NIGHT,))
    assert calendars.is_holiday(calendar, utc(2026, 12, 26, 3, 0))  # 22:00 on the 25th in New York
    assert not calendars.is_holiday(calendar, utc(2026, 12, 26, 6, 0))
    assert Calendar.from_json(calendar.to_json()) == calendar
    assert Calendar.from_json(None) is None and calendars.window_at(None, utc(2026, 1, 1)) is None


def trigger(calendar: Calendar, cron: str = "0 * * * *") -> CalendarCronTrigger:
    return CalendarCronTrigger(cron, timezone=pendulum.timezone(AMS), calendar=calendar)


RESTRICTION = TimeRestriction(earliest=pendulum.datetime(2026, 1, 1, tz="UTC"), latest=None, catchup=True)


def after(timetable, last_end: dt.datetime):
    interval = DataInterval(pendulum.instance(last_end), pendulum.instance(last_end))
    return timetable.next_dagrun_info(last_automated_data_interval=interval, restriction=RESTRICTION)


def test_a_run_due_in_a_window_runs_when_it_ends_with_its_own_logical_date():
    timetable = trigger(Calendar(timezone=AMS, windows=(SUNDAY_NIGHT,)))
    due = after(timetable, utc(2026, 11, 28, 23, 0))  # the next hourly run: 01:00 Sunday there, in the window
    assert due.data_interval.end == utc(2026, 11, 29, 0, 0)  # its logical time is unchanged
    assert due.run_after == utc(2026, 11, 29, 2, 0)  # it runs when the window ends (03:00 there)
    free = after(timetable, utc(2026, 11, 29, 2, 0))
    assert free.run_after == free.data_interval.end == utc(2026, 11, 29, 3, 0)


def test_the_run_after_a_moved_one_is_due_after_the_window_never_at_the_same_moment():
    """Run ids come from the moment a run is due: the run moved to a window's end stands for the fire at that end
    (two runs due at one moment would collide and stop the scheduler)."""
    timetable = trigger(Calendar(timezone=AMS, windows=(SUNDAY_NIGHT,)))
    moved = after(timetable, utc(2026, 11, 28, 23, 0))
    following = timetable.next_dagrun_info(last_automated_data_interval=moved.data_interval, restriction=RESTRICTION)
    assert moved.run_after == utc(2026, 11, 29, 2, 0) and following.run_after == utc(2026, 11, 29, 3, 0)
    for flavour in (
        CalendarCronDataInterval("0 * * * *", pendulum.timezone(AMS), Calendar(timezone=AMS, windows=(SUNDAY_NIGHT,))),
    ):
        first = after(flavour, utc(2026, 11, 28, 23, 0))
        second = flavour.next_dagrun_info(last_automated_data_interval=first.data_interval, restriction=RESTRICTION)
        assert first.run_after == utc(2026, 11, 29, 2, 0) and second.run_after > first.run_after


def test_runs_due_on_a_holiday_are_skipped():
    timetable = trigger(Calendar(timezone=AMS, holidays=("2026-12-25",)), cron="0 2 * * *")
    due = after(timetable, utc(2026, 12, 24, 1, 0))  # the next 02:00 there is on the 25th: skipped
    assert due.run_after == utc(2026, 12, 26, 1, 0)


def test_the_timetables_round_trip_as_the_scheduler_stores_them():
    calendar = Calendar(timezone=AMS, holidays=("2026-12-25",), windows=(SUNDAY_NIGHT, NEW_YEAR))
    for timetable in (trigger(calendar), CalendarCronDataInterval("0 2 * * *", pendulum.timezone(AMS), calendar)):
        stored = timetable.serialize()
        again = type(timetable).deserialize(stored)
        assert again.calendar == calendar and again.serialize() == stored
        assert "2 maintenance window(s), skipping 1 holiday(s)" in again.description


def calendar_spec(tmp_path, calendar: str, cron: str = "0 3 * * *"):
    text = MINIMAL.format(name="events").replace("<cron>0 3 * * *</cron>", f"<cron>{cron}</cron>")
    return write(tmp_path, text.replace("</schedule>", f"</schedule>\n  {calendar}"))


def test_a_spec_calendar_inline_or_from_a_shared_file_becomes_the_dags_timetable(tmp_path):
    inline = load_spec(
        calendar_spec(
            tmp_path,
            f'<calendar timezone="{AMS}"><holiday date="2026-12-25"/>'
            '<window days="sun" start="01:00" end="03:00" reason="source backup"/></calendar>',
        )
    )
    assert inline.calendar == Calendar(timezone=AMS, holidays=("2026-12-25",), windows=(SUNDAY_NIGHT,))
    dag = build_dag(inline)
    assert isinstance(dag.timetable, CalendarCronTrigger) and dag.timetable.calendar == inline.calendar
    (tmp_path / "calendars").mkdir()
    (tmp_path / "calendars" / "vendor.xml").write_text(
        f'<calendar timezone="{AMS}"><window date="2026-12-31" start="22:00" end="01:30" reason="year end"/></calendar>'
    )
    shared = load_spec(calendar_spec(tmp_path, '<calendar file="calendars/vendor.xml"/>'))
    assert shared.calendar == Calendar(timezone=AMS, windows=(NEW_YEAR,))


@pytest.mark.parametrize(
    ("calendar", "message"),
    [
        ('<calendar><window days="sun" start="1am" end="03:00"/></calendar>', "'1am' is not a time of day"),
        ('<calendar><window days="sunday funday" start="01:00" end="03:00"/></calendar>', "'funday' is not a day"),
        ('<calendar><window days="sun" date="2026-12-31" start="01:00" end="03:00"/></calendar>', "days= or date="),
        ('<calendar timezone="Moon/Base"/>', "'Moon/Base' is not a time zone"),
        ('<calendar file="calendars/none.xml"/>', "calendar file 'calendars/none.xml' does not exist"),
    ],
)
def test_a_bad_calendar_is_refused_with_what_to_write(tmp_path, calendar, message):
    with pytest.raises(SpecError, match=message):
        load_spec(calendar_spec(tmp_path, calendar))
