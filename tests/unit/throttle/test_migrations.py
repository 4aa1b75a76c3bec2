"""The provider's tables are created and upgraded by numbered migrations (SQLite here; PostgreSQL in the
integration tier): fresh, from a database an older flux made with create_all, twice, and several at once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, inspect, select, text

from flux_provider.throttle import migrations, store


@pytest.fixture
def engine(tmp_path):
    return create_engine(f"sqlite:///{tmp_path / 'airflow.db'}")


def primary_key(engine, table: str) -> list[str]:
    return inspect(engine).get_pk_constraint(table)["constrained_columns"]


def test_a_fresh_database_gets_the_latest_version(engine):
    assert migrations.upgrade(engine) == migrations.LATEST == 7
    names = set(inspect(engine).get_table_names())
    assert {
        "flux_throttle",
        "flux_throttle_events",
        "flux_task_outcomes",
        "flux_lease",
        "flux_schema",
        "flux_lost_tries",
        "flux_source",
        "flux_source_samples",
    } <= names
    assert primary_key(engine, "flux_task_outcomes") == ["dag_id", "run_id", "task_id", "map_index", "try_number"]
    assert migrations.upgrade(engine) == migrations.LATEST  # idempotent


def test_an_older_database_is_upgraded_and_keeps_its_rows(engine):
    """A database at version 1 (a try recorded by an older flux, whose table has no map index): the upgrade
    keeps the row, gives it map index -1 (not mapped), and the new key admits parts of one task."""
    assert migrations.upgrade(engine, target=1) == 1
    with engine.begin() as conn:  # what flux 0.1 wrote; no path of this version writes that shape any more
        conn.execute(
            text(
                "INSERT INTO flux_task_outcomes (dag_id, run_id, task_id, try_number, dataset, state, end_date) "
                "VALUES ('flux_t', 'r1', 'export', 1, 't', 'success', '2026-11-27 00:00:00')"
            )
        )
    assert "map_index" not in primary_key(engine, "flux_task_outcomes")
    assert migrations.upgrade(engine) == migrations.LATEST
    with engine.begin() as conn:
        rows = conn.execute(select(store.outcomes.c.task_id, store.outcomes.c.map_index)).all()
        assert rows == [("export", -1)]
        for part in (0, 1):  # two parts of one mapped task, same try: two rows now
            conn.execute(
                store.outcomes.insert().values(
                    dag_id="flux_t",
                    run_id="r1",
                    task_id="export_upload",
                    map_index=part,
                    try_number=1,
                    dataset="t",
                    state="success",
                    end_date=store.now(),
                )
            )
    assert {i["name"] for i in inspect(engine).get_indexes("flux_task_outcomes")} == {
        "ix_flux_task_outcomes_dataset",
        "ix_flux_task_outcomes_end_date",
    }


def test_a_version_2_database_gets_the_calendar_column_and_keeps_its_data_sets(engine):
    assert migrations.upgrade(engine, target=2) == 2
    assert "calendar" not in {c["name"] for c in inspect(engine).get_columns("flux_throttle")}
    with engine.begin() as conn:  # a data set registered by flux before calendars
        conn.execute(
            text(
                "INSERT INTO flux_throttle (dataset, pool, low, high, initial, updated_at) "
                "VALUES ('titles', 'flux_titles', 1, 4, 2, '2026-11-27 00:00:00')"
            )
        )
    assert migrations.upgrade(engine) == migrations.LATEST
    with engine.begin() as conn:
        rows = conn.execute(select(store.throttle.c.dataset, store.throttle.c.calendar)).all()
    assert rows == [("titles", None)]


def test_a_version_3_database_gets_the_decision_columns_and_keeps_its_outcomes(engine):
    assert migrations.upgrade(engine, target=3) == 3
    assert not {"rule", "action"} & {c["name"] for c in inspect(engine).get_columns("flux_task_outcomes")}
    with engine.begin() as conn:  # a failure recorded before version 4: the decision inside the message
        conn.execute(
            text(
                "INSERT INTO flux_task_outcomes (dag_id, run_id, task_id, map_index, try_number, dataset, state, "
                "end_date, error_class, message) VALUES ('flux_t', 'r1', 'export', -1, 1, 't', 'failed', "
                "'2026-11-27 00:00:00', 'deadlock', 'deadlocks: retry 1/5 in 2s | victim')"
            )
        )
    assert migrations.upgrade(engine) == migrations.LATEST
    with engine.begin() as conn:
        rows = conn.execute(select(store.outcomes.c.message, store.outcomes.c.rule, store.outcomes.c.action)).all()
    assert rows == [("deadlocks: retry 1/5 in 2s | victim", None, None)]


def test_a_version_4_database_gets_the_timing_and_pool_columns_and_keeps_its_rows(engine):
    assert migrations.upgrade(engine, target=4) == 4
    assert "first_row" not in {c["name"] for c in inspect(engine).get_columns("flux_task_outcomes")}
    with engine.begin() as conn:  # a data set and a try recorded before the latency signal
        conn.execute(
            text(
                "INSERT INTO flux_throttle (dataset, pool, low, high, initial, updated_at) "
                "VALUES ('titles', 'flux_titles', 1, 4, 2, '2026-11-27 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO flux_task_outcomes (dag_id, run_id, task_id, map_index, try_number, dataset, state, "
                "end_date, seconds) VALUES ('flux_t', 'r1', 'export', -1, 1, 'titles', 'success', "
                "'2026-11-27 00:00:00', 12.5)"
            )
        )
    assert migrations.upgrade(engine) == migrations.LATEST
    with engine.begin() as conn:
        throttle = conn.execute(select(store.throttle.c.dataset, store.throttle.c.algorithm, store.throttle.c.rules))
        tries = conn.execute(select(store.outcomes.c.seconds, store.outcomes.c.first_row, store.outcomes.c.rows_per_s))
        assert (throttle.all(), tries.all()) == ([("titles", None, None)], [(12.5, None, None)])


def test_tables_made_by_create_all_without_a_version_are_version_1(engine):
    migrations.upgrade(engine, target=1)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE flux_schema"))  # as flux 0.1 left them: tables, no version
    with engine.connect() as conn:
        assert migrations.current_version(conn) == 1
    assert migrations.upgrade(engine) == migrations.LATEST


def test_several_upgrades_at_once_all_end_at_the_latest(engine):
    migrations.upgrade(engine, target=1)
    results, errors = [], []

    def run():
        try:
            results.append(migrations.upgrade(create_engine(engine.url, connect_args={"timeout": 30})))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and results == [migrations.LATEST] * 4
