"""Data-set specs on the stack: pools at start-up and by pools sync, the sample bundle under the real scheduler,
runs without a logical date."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.specs import MINIMAL, write
from tests.support.stack import pools_sync, records
from tests.support.throttle import events


# ------------------------------------------------------------------ on the stack
@pytest.mark.stack
def test_the_stack_creates_the_specs_pools_at_start_up(airflow_client):
    for name in ("flux_titles", "flux_viewing_sessions", "flux_ad_impressions"):
        pool = airflow_client.request("GET", f"/pools/{name}").json()
        assert pool["slots"] >= 1 and "flux data set" in pool["description"]


@pytest.mark.stack
def test_pool_sync_creates_missing_pools_and_keeps_changed_slots(stack, tmp_path, airflow_client, unique):

    folder = tmp_path / "specs"
    folder.mkdir()
    name = f"ev_{unique}"
    write(folder, MINIMAL.format(name=name), name=name)

    def sync(*extra):
        return pools_sync(stack, tmp_path, *extra)

    assert f"created  pool flux_{name} (2 slots)" in sync()
    assert airflow_client.request("GET", f"/pools/flux_{name}").json()["slots"] == 2
    airflow_client.request(
        "PATCH", f"/pools/flux_{name}", json={"name": f"flux_{name}", "slots": 5, "include_deferred": False}
    )
    assert f"kept     pool flux_{name} (5 slots)" in sync()
    assert f"reset    pool flux_{name} (2 slots)" in sync("--reset")
    assert airflow_client.request("GET", f"/pools/flux_{name}").json()["slots"] == 2


@pytest.mark.stack
def test_the_sample_bundle_runs_under_the_real_scheduler_and_reconciles_in_hive(stack, sample_run):
    """The demo's own code path on small data; row counts checked in Hive against the generated source."""
    import sqlite3

    from flux_devstack.demo import SPLIT_CAPACITY, lowest, report, stopped_by

    env = stack.env()
    outcomes = sample_run.outcomes
    assert [(o.dataset, o.state) for o in outcomes] == [
        ("titles", "success"),
        ("subscribers", "success"),
        ("viewing_sessions", "success"),
        ("ad_impressions", "success"),
    ]
    assert all(o.reconciled for o in outcomes)
    titles, subscribers, sessions, ads = outcomes
    # the dimensions loaded one day's partition; the facts ran for it, created after the dimensions wrote it
    assert titles.partition is not None and {o.partition for o in outcomes} == {titles.partition}
    assert sessions.created >= max(titles.wrote, subscribers.wrote) and ads.created >= subscribers.wrote
    assert sessions.held  # no run of viewing_sessions for the day while only titles had written it
    assert report(outcomes, env)  # the demo's table, and the split fact's parts beside its pool's slots
    # its pool was set to 6 slots on a server of capacity 3: the budget the four data sets share came down to the
    # server's room, read from the server's own state, and held the pool at its share (or the controller cut it)
    assert stopped_by(sessions.slot_changes) in ("server", "latency", "errors"), sessions.slot_changes
    budget = [e for e in events(stack, "source:mssql_default") if e["actor"] == "controller"]
    assert any(e["new"] <= SPLIT_CAPACITY and "room for" in e["reason"] for e in budget), budget
    assert lowest(sessions.slot_changes) <= SPLIT_CAPACITY  # it came down to the capacity (then probes)
    with sqlite3.connect(env["FLUX_MSSQL_DB"]) as conn:
        source = {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("catalog_titles", "subscribers", "viewing_sessions", "ad_impressions")
        }
        by_day = dict(conn.execute("SELECT substr(started_at, 1, 10), COUNT(*) FROM viewing_sessions GROUP BY 1"))
        ads = {}
        for day, revenue in conn.execute("SELECT substr(shown_at, 1, 10), revenue FROM ad_impressions"):
            count, total = ads.get(day, (0, Decimal(0)))
            ads[day] = (count + 1, total + Decimal(revenue))
    assert records("SELECT COUNT(*) FROM media.titles_latest") == [(source["catalog_titles"],)]
    assert records("SELECT COUNT(*) FROM media.subscribers_latest") == [(source["subscribers"],)]
    days = dict(records("SELECT day, SUM(sessions) FROM media.viewing_daily GROUP BY day"))
    assert {d: days[d] for d in by_day} == by_day
    hive_ads = {
        d: (n, Decimal(r))
        for d, n, r in records("SELECT day, SUM(impressions), SUM(revenue) FROM media.ad_revenue_daily GROUP BY day")
    }
    assert {d: hive_ads[d] for d in ads} == ads  # revenue to 6 places, DECIMAL end to end
    assert sum(n for n, _ in ads.values()) == source["ad_impressions"]
    fact = outcomes[2]  # viewing_sessions: 8 key ranges of session_id
    parts = {p["part"]: p["rows"] for p in fact.parts}
    # the stand-in describes every column of a view as nullable, so the plan adds the (empty) NULL part
    assert sorted(parts) == [f"p{i:02d}" for i in range(8)] + ["pnull"] and parts["pnull"] == 0
    assert sum(parts.values()) == fact.exported == source["viewing_sessions"]


@pytest.mark.stack
def test_runs_without_a_logical_date_load_their_day(stack, airflow_client):
    """A manual run triggered with logical_date null (the sample titles spec partitions by {{ flux_day }}):
    it loads today's partition; with conf {"day": ...} that day's; its Asset event carries the day that
    the data sets <after> it take."""
    import datetime as dt

    for dependent in ("flux_viewing_sessions", "flux_ad_impressions"):  # keep the Asset-triggered runs out
        airflow_client.request("PATCH", f"/dags/{dependent}", json={"is_paused": True})
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()  # titles' time zone is UTC
    # a day within titles' 30-day retention, so a later scheduled run keeps it
    chosen_day = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=2)).isoformat()
    manual = airflow_client.run_dag("flux_titles", logical_date=None)
    assert manual.state == "success", manual.task_states
    chosen = airflow_client.run_dag("flux_titles", conf={"day": chosen_day}, logical_date=None)
    assert chosen.state == "success", chosen.task_states
    partitions = {row[0] for row in records("SHOW PARTITIONS media.titles")}
    assert {f"snapshot_day={today}", f"snapshot_day={chosen_day}"} <= partitions
    events = airflow_client.asset_events("flux_titles", chosen.run_id)
    assert [e["extra"].get("day") for e in events] == [chosen_day]
