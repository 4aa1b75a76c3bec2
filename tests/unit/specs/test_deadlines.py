"""Freshness deadlines without a stack: the spec's <deadline>, the moment a finishBy falls on (time zones
and daylight saving), the reference's round trip as the scheduler stores it, and the DAG's alert."""

from __future__ import annotations

import datetime as dt

import pytest

from flux_provider.deadlines import FinishBy, alert_for, next_time_of_day
from flux_provider.specs import SpecError, load_spec
from flux_provider.specs.factory import build_dag
from tests.support.specs import MINIMAL, write

UTC = dt.timezone.utc


def with_deadline(tmp_path, deadline: str, alerts: str = ""):
    text = MINIMAL.format(name="events").replace("<owner>team</owner>", f"<owner>team</owner>{alerts}")
    return write(tmp_path, text.replace("</schedule>", f"</schedule>\n  {deadline}"))


@pytest.mark.parametrize(
    ("moment", "at", "zone", "expected"),
    [
        (
            dt.datetime(2026, 11, 27, 3, 0, tzinfo=UTC),
            "06:00",
            "Europe/Amsterdam",
            dt.datetime(2026, 11, 27, 5, 0, tzinfo=UTC),
        ),
        (
            dt.datetime(2026, 11, 27, 5, 0, tzinfo=UTC),
            "06:00",
            "Europe/Amsterdam",
            dt.datetime(2026, 11, 27, 5, 0, tzinfo=UTC),
        ),
        (
            dt.datetime(2026, 11, 27, 5, 1, tzinfo=UTC),
            "06:00",
            "Europe/Amsterdam",
            dt.datetime(2026, 11, 28, 5, 0, tzinfo=UTC),
        ),
        # the night summer time starts (29 March 2026): 06:00 local is 04:00 UTC, no longer 05:00
        (
            dt.datetime(2026, 3, 28, 22, 0, tzinfo=UTC),
            "06:00",
            "Europe/Amsterdam",
            dt.datetime(2026, 3, 29, 4, 0, tzinfo=UTC),
        ),
        (dt.datetime(2026, 11, 27, 23, 30, tzinfo=UTC), "00:15", "UTC", dt.datetime(2026, 11, 28, 0, 15, tzinfo=UTC)),
    ],
)
def test_finish_by_is_the_first_such_time_of_day_at_or_after_the_run_is_due(moment, at, zone, expected):
    assert next_time_of_day(moment, at, zone) == expected


def test_a_spec_deadline_becomes_the_dags_deadline_alert_with_the_specs_channels(tmp_path):
    path = with_deadline(
        tmp_path,
        '<deadline finishBy="06:00" timezone="Europe/Amsterdam"/>',
        "<alerts><email>oncall@example.com</email><webhook>http://hooks.example/x</webhook></alerts>",
    )
    spec = load_spec(path)
    assert (spec.deadline.finish_by, spec.deadline.within_minutes, spec.deadline.timezone) == (
        "06:00",
        None,
        "Europe/Amsterdam",
    )
    dag = build_dag(spec)
    (alert,) = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    assert alert.reference == FinishBy(at="06:00", timezone="Europe/Amsterdam") and alert.interval == dt.timedelta(0)
    assert alert.callback.kwargs["emails"] == ["oncall@example.com"]
    assert alert.callback.kwargs["webhooks"] == ["http://hooks.example/x"]
    within = load_spec(with_deadline(tmp_path, '<deadline withinMinutes="90"/>'))
    assert alert_for(within.deadline, dataset="x").interval == dt.timedelta(minutes=90)
    assert within.deadline.timezone == "UTC"
    assert alert_for(load_spec(write(tmp_path, MINIMAL.format(name="events"))).deadline, dataset="events") is None


def test_the_finish_by_reference_round_trips_as_the_scheduler_stores_it():
    reference = FinishBy(at="05:30", timezone="America/New_York")
    stored = reference.serialize_reference()
    assert stored == {"reference_type": "FinishBy", "at": "05:30", "timezone": "America/New_York"}
    assert FinishBy.deserialize_reference(stored) == reference


@pytest.mark.parametrize(
    ("deadline", "message"),
    [
        ('<deadline finishBy="06:00" withinMinutes="5"/>', "either finishBy= or withinMinutes="),
        ("<deadline/>", "either finishBy= or withinMinutes="),
        ('<deadline finishBy="6am"/>', "'6am' is not a time of day"),
        ('<deadline finishBy="24:00"/>', "'24:00' is not a time of day"),
        ('<deadline finishBy="06:00" timezone="Mars/Olympus"/>', "'Mars/Olympus' is not a time zone"),
        ('<deadline withinMinutes="0"/>', "withinMinutes must be more than 0"),
    ],
)
def test_a_bad_deadline_is_refused_with_what_to_write(tmp_path, deadline, message):
    with pytest.raises(SpecError, match=message):
        load_spec(with_deadline(tmp_path, deadline))
