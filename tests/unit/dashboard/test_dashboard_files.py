"""The dashboard's pure parts: how a recorded failure splits into rule, action and message, the step series
on one time axis, the errors' buckets, and the bundled front-end files (offline, reproducible, shipped)."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatch
from importlib import resources

import pytest
import tomllib

from flux_provider.dashboard import api, overview
from flux_provider.dashboard import series as steps
from flux_provider.throttle import observations
from tests.support import REPO


def test_a_failure_has_the_same_rule_action_and_message_whichever_path_recorded_it():
    """A retried try is read from Airflow's retry reason, the last try from its flux_error XCom: the controller
    gets the same class, factor, rule, decision and message from both (and the dashboard shows those columns)."""
    from types import SimpleNamespace

    from flux_provider.errors import ErrorRecord
    from flux_provider.recovery import Outcome, RetryReason

    record = ErrorRecord(
        message="Invalid object name 'dbo.gone'. | with a bar: and a colon", error_class="missing_object", terminal=True
    )
    outcome = Outcome(kind="fail", rule="missing", reason="fail at once", throttle_down=0.5)
    try_ = SimpleNamespace(retry_reason=RetryReason.of(record, outcome).to_text(), try_number=1, state="failed")
    from_retry = observations.classify(try_, None)
    from_xcom = observations.classify(
        SimpleNamespace(**{**vars(try_), "retry_reason": None}), record.decided(outcome.decision())
    )
    expected = RetryReason("missing_object", "missing", "fail at once", record.message, 0.5)
    assert from_retry == from_xcom == expected
    lost = observations.classify(SimpleNamespace(retry_reason=None, try_number=2, state="failed"), None)
    assert (lost.error_class, lost.rule) == ("lost", None)
    assert lost.message.startswith("try 2 ended failed, lost to the orchestrator: it ended without reaching the")


def test_a_retry_reason_another_policy_wrote_is_not_read_as_ours():
    from flux_provider.recovery import RetryReason

    for text in (None, "", "worker lost", "[Not A Class] x", "[deadlock other=1] r: d | m"):
        assert RetryReason.from_text(text) is None, text
    assert RetryReason.from_text("[deadlock] no decision here") == RetryReason(
        "deadlock", None, None, "no decision here"
    )
    victim = RetryReason("deadlock", "r", "retry in 3s", "chosen as deadlock victim", 0.5, query_seconds=4.25)
    assert victim.to_text().startswith("[deadlock query=4.25 throttleDown=0.5] r:")
    assert RetryReason.from_text(victim.to_text()) == victim  # the seconds a victim's query held the source
    long = RetryReason("deadlock", "r", "d", "m" * 600).to_text()
    assert len(long) == RetryReason.LIMIT and RetryReason.from_text(long).message == "m" * (
        500 - len("[deadlock] r: d | ")
    )


def test_step_series_are_aligned_on_every_moment_any_of_them_changes():
    t, series = steps.align({"slots": [(0, 3), (50, 2)], "running": [(0, 0), (10, 1), (20, 0)]}, 0, 100)
    assert t == [0, 10, 20, 50, 100]
    assert series == {"slots": [3, 3, 3, 2, 2], "running": [0, 1, 0, 0, 0]}


@pytest.mark.parametrize(("hours", "minutes"), [(1, 1), (24, 15), (168, 120), (744, 720)])
def test_the_errors_chart_has_about_a_hundred_round_buckets(hours, minutes):
    assert steps.bucket_seconds(hours) == minutes * 60
    assert hours * 60 / minutes <= 120


def test_log_links_point_at_the_try_in_airflows_ui():
    assert overview.log_url("flux_a", "manual__2026-01-01T00:00:00+00:00", "export_upload", 3, 2) == (
        "/dags/flux_a/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00/tasks/export_upload/mapped/3?try_number=2"
    )
    assert overview.log_url("flux_a", "r", "transform").endswith("/runs/r/tasks/transform")


def test_every_sort_key_is_known_and_a_bad_one_is_refused():
    row = {
        "health": "ok",
        "dataset": "a",
        "owner": None,
        "last_run": None,
        "next_run": None,
        "rows": None,
        "slots": None,
        "running": 0,
        "queued": 0,
        "errors": {},
    }
    for key in overview.SORT_KEYS:
        overview._sort_key(key)(row)  # total on a row with nothing in it
    with pytest.raises(ValueError, match="cannot sort by 'size'"):
        overview._sort_key("size")


def test_the_bundled_chart_library_is_the_locked_version_and_ships_in_the_wheel():
    lock = json.loads((REPO / "ui" / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/uplot"]["version"]
    static = resources.files("flux_provider.dashboard").joinpath("static")
    head = static.joinpath("uPlot.iife.min.js").read_text()[:200]
    assert f"(v{version})" in head
    assert static.joinpath("uPlot.LICENSE").read_text().startswith("The MIT License")
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "flux_provider"
    ]
    for name in [*api.STATIC, "uPlot.LICENSE"]:
        assert any(fnmatch(f"dashboard/static/{name}", p) for p in patterns), name
    assert any(fnmatch("dashboard/dashboard.html", p) for p in patterns)


def test_the_page_loads_nothing_from_another_host():
    page = resources.files("flux_provider.dashboard").joinpath("dashboard.html").read_text()
    script = resources.files("flux_provider.dashboard").joinpath("static", "dashboard.js").read_text()
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)
    assert set(re.findall(r'(?:src|href)="(static/[^"]+)"', page)) == {
        f"static/{n}" for n in ("uPlot.min.css", "uPlot.iife.min.js", "dashboard.js")
    }
    assert "http://" not in script and "https://" not in script
