"""``{{ flux_day }}``: a defined day for every kind of run (pure: contexts built here, no services)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pendulum
import pytest

from flux_provider.error_taxonomy import ErrorClass, FluxError
from flux_provider.run_day import run_day

PARIS = pendulum.timezone("Europe/Paris")


LATE = dt.datetime(2026, 11, 26, 23, 30, tzinfo=dt.timezone.utc)  # already the 27th in Paris


def context(*, conf=None, logical_date=None, interval_start=None, run_after=LATE, events=None):
    dag_run = SimpleNamespace(
        conf=conf or {},
        logical_date=logical_date,
        data_interval_start=interval_start,
        run_after=run_after,
        start_date=run_after,
    )
    ctx = {"dag_run": dag_run, "triggering_asset_events": events or {}}
    if interval_start is not None:
        ctx["data_interval_start"] = interval_start
    return ctx


def event(timestamp, day=None):
    return SimpleNamespace(timestamp=timestamp, extra={"day": day} if day else {})


def test_conf_day_wins_over_everything():
    assert run_day(context(conf={"day": "2026-03-01"}, interval_start=LATE), PARIS) == "2026-03-01"


@pytest.mark.parametrize("bad", ["yesterday", "2026-02-30", "2026-3-1"])
def test_a_bad_conf_day_is_a_config_error_with_the_fix(bad):
    with pytest.raises(FluxError) as failure:
        run_day(context(conf={"day": bad}), PARIS, dataset="titles")
    assert failure.value.error_class is ErrorClass.CONFIG and "YYYY-MM-DD" in str(failure.value)
    assert "titles" in str(failure.value)


def test_a_scheduled_run_takes_its_interval_start_in_the_spec_time_zone():
    assert run_day(context(logical_date=LATE, interval_start=LATE), PARIS) == "2026-11-27"
    assert run_day(context(logical_date=LATE, interval_start=LATE), pendulum.timezone("UTC")) == "2026-11-26"


def test_an_asset_triggered_run_takes_the_upstream_runs_day_else_the_events_time():
    upstream = {"flux.titles": [event(LATE, "2026-11-20")], "flux.subscribers": [event(LATE, "2026-11-21")]}
    assert run_day(context(events=upstream), PARIS) == "2026-11-21"
    assert run_day(context(events={"flux.titles": [event(LATE)]}), PARIS) == "2026-11-27"


def test_a_manual_run_without_logical_date_takes_the_time_it_was_queued():
    assert run_day(context(run_after=LATE), PARIS) == "2026-11-27"
    assert run_day(context(run_after=LATE), None) == "2026-11-26"


def make_operator(value: str):
    from airflow.sdk import DAG

    from flux_provider.operators.base import FluxOperator

    class Templated(FluxOperator):
        template_fields = ("value",)
        step = "transform"

        def __init__(self, **kwargs):
            super().__init__(task_id="templated", **kwargs)
            self.dataset, self.value = "events", value

    with DAG("flux_events", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):  # Airflow's strict Jinja
        return Templated()


def test_flux_day_renders_in_a_run_without_logical_date():
    op = make_operator("{{ flux_day }}/{{ flux_day | replace('-', '') }}")
    op.render_template_fields(context(run_after=LATE))
    assert op.value == "2026-11-26/20261126"


def test_a_template_that_cannot_render_is_terminal_and_says_what_to_write():
    """A run with no logical date (Asset-triggered, or triggered with logical_date null) and {{ ds }}: a
    config error at once (AirflowFailException: no retries), never 5 retries as 'unknown'."""
    from airflow.sdk.exceptions import AirflowFailException

    op = make_operator("{{ ds }}")
    with pytest.raises(AirflowFailException) as failure:
        op.render_template_fields(context())
    assert failure.value.error_class is ErrorClass.CONFIG and failure.value.terminal
    assert "'ds' is undefined" in str(failure.value) and "{{ flux_day }}" in str(failure.value)
    assert failure.value.flux_outcome.kind == "fail"
    op = make_operator("{{ no_such_thing.attr }}")
    with pytest.raises(AirflowFailException, match="Fix the template in the spec"):
        op.render_template_fields(context())
