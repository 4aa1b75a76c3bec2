"""Landing retention's decision: which generations of runs/ a rule removes (pure: no S3)."""

from __future__ import annotations

import datetime as dt

import pytest

from flux_provider.retention import LandingRule, LandingRun, to_remove

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)


def run(name: str, days_old: float, complete: bool = True) -> LandingRun:
    return LandingRun(name, (f"runs/{name}/x",), 10, NOW - dt.timedelta(days=days_old), complete)


def names(runs) -> list[str]:
    return [r.name for r in runs]


def test_keeps_the_newest_complete_runs_and_removes_the_rest():
    runs = [run("d1", 9), run("d1.1", 8), run("d2", 7), run("d3", 6)]
    assert names(to_remove(runs, LandingRule(keep_runs=2, keep_days=0), set(), NOW)) == ["d1", "d1.1"]


def test_the_published_and_the_own_run_are_kept_beyond_the_count():
    runs = [run("old", 30), run("d2", 7), run("d3", 6)]
    assert names(to_remove(runs, LandingRule(keep_runs=1, keep_days=0), {"old"}, NOW)) == ["d2"]


def test_anything_written_within_keep_days_is_kept_complete_or_not():
    """A try in flight or one a retry may resume (no manifest yet) is young: never removed."""
    runs = [run("d1", 10), run("d2", 10, complete=False), run("d3", 1, complete=False), run("d4", 2.9)]
    assert names(to_remove(runs, LandingRule(keep_runs=1, keep_days=3), set(), NOW)) == ["d1", "d2"]


def test_an_incomplete_run_never_counts_as_one_of_the_kept_runs():
    runs = [run("d1", 5), run("d2", 4, complete=False)]
    assert names(to_remove(runs, LandingRule(keep_runs=1, keep_days=0), set(), NOW)) == ["d2"]


@pytest.mark.parametrize("runs, days", [(0, 1), (1, -1)])
def test_a_rule_that_would_keep_nothing_is_refused(runs, days):
    with pytest.raises(ValueError, match="keep_runs must be >= 1"):
        LandingRule(keep_runs=runs, keep_days=days)


def test_pruning_never_fails_the_load_and_says_why_it_left_the_landing():
    """Housekeeping after a load that did its work: a landing it cannot read gives an outcome with the error,
    never an exception, and no statement reaches the Hive session. (Real stores: test_landing_retention.py.)"""
    from flux_provider.hooks import landing
    from flux_provider.retention import Landing

    ran = []
    session = type("Session", (), {"execute": lambda self, sql, what=None: ran.append(sql)})()
    where = Landing(s3_location="s3:///media/titles", raw_table="`media`.`titles_raw`", rule=LandingRule())
    outcome = landing.prune(where, session, "r1", aws_conn_id="aws_default", dataset="titles")
    assert "has no bucket" in outcome.error and outcome.removed == [] and ran == []
