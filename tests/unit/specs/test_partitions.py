"""A data set's partitions (pure: specs written here, timetables asked directly, no scheduler): which data
sets are partitioned and by what, what a fact waits for, the partition timetable with a business calendar
(scheduled runs and backfills), and the partition a run loads and records."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pendulum
import pytest

from flux_provider.calendars import Calendar, Window
from flux_provider.error_taxonomy import FluxError
from flux_provider.run_day import run_day, run_partition_key
from flux_provider.specs.parser import SpecError, load_spec
from flux_provider.specs.render import schedule
from flux_provider.specs.timetable import PartitionCron
from tests.support import REPO
from tests.support.specs import MINIMAL, plan_beside

UTC = dt.timezone.utc


def spec_text(name: str, *, schedule_xml: str, partition: str = '<partition name="day"/>') -> str:
    return (
        MINIMAL.format(name=name)
        .replace('<partition name="day"/>', partition)
        .replace("<schedule><cron>0 3 * * *</cron></schedule>", schedule_xml)
    )


def dimension(name: str, cron: str = "0 2 * * *", grain: str = "") -> str:
    return spec_text(
        name,
        schedule_xml=f"<schedule{grain}><cron>{cron}</cron></schedule>",
        partition='<partition name="snapshot_day" value="{{ flux_day }}"/>',
    )


def snapshot(name: str) -> str:
    """A dimension overwritten whole (no partition): not partitioned."""
    return spec_text(name, schedule_xml="<schedule><cron>0 2 * * *</cron></schedule>", partition="")


def fact(name: str, *after: str, attrs: str = "") -> str:
    afters = "".join(f"<after>{a}</after>" for a in after)
    return spec_text(name, schedule_xml=f"<schedule{attrs}>{afters}</schedule>")


def plan_in(folder, **specs):
    for name, text in specs.items():
        (folder / f"{name}.xml").write_text(text)
    return {name: plan_beside(load_spec(folder / f"{name}.xml", check_queries=False)) for name in specs}


# ------------------------------------------------------------------ which data sets are partitioned
def test_the_samples_dimensions_write_a_day_and_their_facts_wait_for_that_day_from_each():
    folder = REPO / "dags" / "specs"
    names = ("titles", "viewing_sessions")
    plans = {n: plan_beside(load_spec(folder / f"{n}.xml", check_queries=False)) for n in names}
    assert (plans["titles"].schedule.grain, plans["titles"].schedule.key_format) == ("day", "%Y-%m-%d")
    fact_schedule = plans["viewing_sessions"].schedule
    assert fact_schedule.grain == "day"
    assert fact_schedule.waits_for == (("titles", "day"), ("subscribers", "day"))


def test_a_cron_data_set_without_a_day_partition_is_not_partitioned_unless_it_says_so(tmp_path):
    plans = plan_in(
        tmp_path,
        events=spec_text("events", schedule_xml="<schedule><cron>0 3 * * *</cron></schedule>"),
        hourly=spec_text("hourly", schedule_xml='<schedule grain="hour"><cron>5 * * * *</cron></schedule>'),
        optout=dimension("optout", grain=' grain="none"'),
    )
    assert plans["events"].schedule.grain is None
    assert (plans["hourly"].schedule.grain, plans["hourly"].schedule.key_format) == ("hour", "%Y-%m-%dT%H")
    assert plans["optout"].schedule.grain is None


def test_a_snapshot_dimension_does_not_gate_a_partition_and_is_read_as_it_is(tmp_path):
    plans = plan_in(tmp_path, dim=dimension("dim"), snap=snapshot("snap"), fact=fact("fact", "dim", "snap"))
    s = plans["fact"].schedule
    assert (s.grain, s.waits_for, s.reads_latest) == ("day", (("dim", "day"),), ("snap",))
    assert "reads as they are (no partitions): snap" in plans["fact"].text()


def test_after_only_snapshots_or_with_require_update_keeps_the_asset_schedule(tmp_path):
    plans = plan_in(
        tmp_path,
        dim=dimension("dim"),
        snap=snapshot("snap"),
        onsnap=fact("onsnap", "snap"),
        anyday=fact("anyday", "dim", attrs=' require="update"'),
    )
    for name in ("onsnap", "anyday"):
        s = plans[name].schedule
        assert (s.kind, s.grain, s.waits_for) == ("after", None, ())
        assert [a.name for a in schedule(s)] == [f"flux.{a}" for a in s.after]  # Airflow's Asset list


def test_a_chain_of_after_takes_the_grain_of_its_source(tmp_path):
    plans = plan_in(tmp_path, dim=dimension("dim"), mid=fact("mid", "dim"), top=fact("top", "mid"))
    assert plans["top"].schedule.waits_for == (("mid", "day"),)


def test_a_day_fact_rolls_up_24_hours_of_an_hourly_upstream(tmp_path):
    hourly = spec_text("clicks", schedule_xml='<schedule grain="hour"><cron>5 * * * *</cron></schedule>')
    plans = plan_in(tmp_path, clicks=hourly, dim=dimension("dim"), daily=fact("daily", "clicks", "dim"))
    s = plans["daily"].schedule
    assert (s.grain, s.waits_for) == ("day", (("clicks", "hour"), ("dim", "day")))
    timetable = schedule(s)
    mappers = {ref.name: m for ref, m in timetable.partition_mapper_config.items()}
    assert type(mappers["flux.dim"]).__name__ == "IdentityMapper"
    rollup = mappers["flux.clicks"]
    assert type(rollup).__name__ == "RollupMapper" and type(rollup.window).__name__ == "DayWindow"
    assert rollup.upstream_mapper.input_format == "%Y-%m-%dT%H"


@pytest.mark.parametrize(
    ("specs", "name", "words"),
    [
        (
            {"dim": dimension("dim"), "h": fact("h", "dim", attrs=' grain="hour"')},
            "h",
            "cannot wait for the day partitions of dim",
        ),
        ({"twice": dimension("twice", cron="0 2,14 * * *")}, "twice", "fires more than once in the day"),
        (
            {"manual": spec_text("manual", schedule_xml='<schedule grain="day"><preset>none</preset></schedule>')},
            "manual",
            "needs runs that Airflow creates per partition",
        ),
    ],
    ids=["hour-after-day", "twice-a-day", "manual"],
)
def test_partitions_that_cannot_work_are_spec_errors_with_the_fix(tmp_path, specs, name, words):
    with pytest.raises(SpecError) as failure:
        plan_in(tmp_path, **specs)
    assert words in str(failure.value) and "Fix:" in str(failure.value) and f"{name}.xml" in str(failure.value)


def test_a_time_split_keeps_its_data_intervals_and_refuses_a_grain(tmp_path):
    text = spec_text("ts", schedule_xml='<schedule grain="day"><cron>0 3 * * *</cron></schedule>').replace(
        '<source schema="dbo" table="events"/>',
        '<source schema="dbo" table="events"><split column="at" every="hour"/></source>',
    )
    with pytest.raises(SpecError, match="partitioned runs have none"):
        plan_in(tmp_path, ts=text)


# ------------------------------------------------------------------ the partition timetable
def infos(timetable, first: str, last: str):
    return list(
        timetable.iter_partition_dagrun_infos(
            earliest=dt.datetime.fromisoformat(first).replace(tzinfo=UTC),
            latest=dt.datetime.fromisoformat(last).replace(tzinfo=UTC),
        )
    )


def test_a_backfill_of_five_days_is_five_partitions_both_ends_included_in_the_cron_time_zone():
    found = infos(PartitionCron("0 2 * * *", timezone="Europe/Paris"), "2026-11-01", "2026-11-05")
    assert [i.partition_key for i in found] == [f"2026-11-0{d}" for d in range(1, 6)]
    first = found[0]
    assert first.partition_date == pendulum.datetime(2026, 11, 1, tz="Europe/Paris")  # the day's start
    assert first.run_after == pendulum.datetime(2026, 11, 1, 2, tz="Europe/Paris")  # its tick


def test_an_hourly_backfill_is_the_hours_of_the_range():
    found = infos(PartitionCron("5 * * * *", timezone="UTC", grain="hour"), "2026-11-01T08:00", "2026-11-01T10:00")
    assert [i.partition_key for i in found] == ["2026-11-01T08", "2026-11-01T09"]  # 10:05 is after the range


CALENDAR = Calendar(
    timezone="UTC",
    holidays=("2026-11-03",),
    windows=(Window(date="2026-11-04", start="01:00", end="06:30", reason="patching"),),
)


def test_a_backfill_skips_holidays_and_runs_a_day_in_a_window_at_its_end_for_that_day():
    found = infos(PartitionCron("0 2 * * *", timezone="UTC", calendar=CALENDAR), "2026-11-02", "2026-11-05")
    assert [i.partition_key for i in found] == ["2026-11-02", "2026-11-04", "2026-11-05"]
    assert found[1].run_after == pendulum.datetime(2026, 11, 4, 6, 30)


def test_scheduled_runs_skip_a_holiday_and_a_moved_run_keeps_its_day():
    from airflow.timetables.base import TimeRestriction

    timetable = PartitionCron("0 2 * * *", timezone="UTC", calendar=CALENDAR)
    restriction = TimeRestriction(earliest=pendulum.datetime(2026, 11, 2), latest=None, catchup=True)
    first = timetable.next_dagrun_info_v2(last_dagrun_info=None, restriction=restriction)
    second = timetable.next_dagrun_info_v2(last_dagrun_info=first, restriction=restriction)
    assert (first.partition_key, second.partition_key) == ("2026-11-02", "2026-11-04")  # the 3rd is a holiday
    assert second.run_after == pendulum.datetime(2026, 11, 4, 6, 30)
    # the scheduler reads the moved run back from the DB: it stands at its own tick, so the next is the 5th
    run = SimpleNamespace(
        run_after=second.run_after,
        partition_date=second.partition_date,
        partition_key=second.partition_key,
        logical_date=None,
        data_interval_start=None,
        data_interval_end=None,
    )
    last = timetable.run_info_from_dag_run(dag_run=run)
    third = timetable.next_dagrun_info_v2(last_dagrun_info=last, restriction=restriction)
    assert third.partition_key == "2026-11-05" and third.run_after == pendulum.datetime(2026, 11, 5, 2)


def test_the_timetable_round_trips_through_airflows_serialization():
    from airflow.serialization.encoders import encode_timetable

    timetable = PartitionCron("0 2 * * *", timezone="Europe/Paris", grain="day", calendar=CALENDAR)
    again = PartitionCron.deserialize(timetable.serialize())
    assert again.serialize() == timetable.serialize() and again.calendar == CALENDAR
    assert encode_timetable(timetable)["__type"].endswith("PartitionCron")
    assert again.resolve_partition_date("2026-11-04") == pendulum.datetime(2026, 11, 4, tz="Europe/Paris")


# ------------------------------------------------------------------ the partition a run loads
def context(*, key=None, conf=None):
    run = SimpleNamespace(partition_key=key, conf=conf or {}, logical_date=None, run_after=None, start_date=None)
    return {"dag_run": run, "triggering_asset_events": {}}


def test_a_partitioned_run_loads_its_key_and_a_manual_runs_conf_day_means_the_same_partition():
    assert run_day(context(key="2026-11-04")) == "2026-11-04"
    assert run_day(context(key="2026-11-04T05")) == "2026-11-04"
    manual = context(conf={"day": "2026-11-02"})
    assert run_partition_key(manual, "day", run_day(manual)) == "2026-11-02"
    assert run_partition_key(context(key="2026-11-04"), "day", "2026-11-04") == "2026-11-04"
    assert run_partition_key(manual, None, "2026-11-02") is None  # not partitioned: nothing recorded


def test_a_conf_day_that_is_not_the_runs_partition_is_a_config_error():
    with pytest.raises(FluxError, match="partition '2026-11-04' and its conf gives day='2026-11-02'"):
        run_day(context(key="2026-11-04", conf={"day": "2026-11-02"}), dataset="titles")
    with pytest.raises(FluxError, match="hour partitions"):
        run_partition_key(context(conf={"day": "2026-11-02"}), "hour", "2026-11-02", dataset="clicks")


def test_the_last_task_records_the_partition_on_its_asset_event():
    """Through the Task SDK's own outlet accessors: what the task runner sends the API server."""
    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from flux_provider.operators.partition_refresh import PartitionRefreshOperator

    asset = Asset(name="flux.titles", uri="flux.titles")
    op = PartitionRefreshOperator(
        task_id="refresh", dataset="titles", database="media", table="titles", outlets=[asset], partition_grain="day"
    )
    events = OutletEventAccessors()
    op._record_day({"flux_day": "2026-11-02", "flux_partition": "2026-11-02", "outlet_events": events})
    assert events[asset].partition_keys == {"2026-11-02"} and events[asset].extra == {"day": "2026-11-02"}
