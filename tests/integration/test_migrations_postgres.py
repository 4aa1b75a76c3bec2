"""The provider's table migrations on PostgreSQL (the machine's server, see the ``postgres`` fixture): a
database at version 1 with a recorded try is upgraded to the latest version and keeps the row."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, select, text

from flux_provider.throttle import migrations, store

TABLES = (
    "flux_task_outcomes",
    "flux_task_outcomes_v2",
    "flux_throttle",
    "flux_throttle_events",
    "flux_lease",
    "flux_schema",
)


@pytest.fixture
def engine(postgres):
    engine = create_engine("postgresql+psycopg2://{user}@{host}:{port}/{dbname}".format(**postgres))

    def drop():
        with engine.begin() as conn:
            for table in TABLES:
                conn.execute(text(f"DROP TABLE IF EXISTS {table}"))

    drop()
    yield engine
    drop()
    engine.dispose()


def test_upgrade_on_postgresql_keeps_the_rows_and_rekeys_the_outcomes(engine):
    assert migrations.upgrade(engine, target=1) == 1
    with engine.begin() as conn:  # what flux 0.1 wrote; no path of this version writes that shape any more
        conn.execute(
            text(
                "INSERT INTO flux_task_outcomes (dag_id, run_id, task_id, try_number, dataset, state, end_date) "
                "VALUES ('flux_t', 'r1', 'export', 1, 't', 'success', now())"
            )
        )
    assert migrations.upgrade(engine) == migrations.LATEST
    assert inspect(engine).get_pk_constraint("flux_task_outcomes")["constrained_columns"] == [
        "dag_id",
        "run_id",
        "task_id",
        "map_index",
        "try_number",
    ]
    with engine.begin() as conn:
        assert conn.execute(select(store.outcomes.c.task_id, store.outcomes.c.map_index)).all() == [("export", -1)]
    assert migrations.upgrade(engine) == migrations.LATEST  # idempotent
