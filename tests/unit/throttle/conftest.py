"""Airflow's own tables (the ORM's schema, on SQLite) with the throttle's, for the SQL-level tests."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine

from flux_provider.throttle import migrations

# the host limit reads this machine's load: off unless a test turns it on (tests/unit/throttle/test_host_limit.py)
os.environ.setdefault("AIRFLOW__FLUX__HOST_LIMIT", "off")


@pytest.fixture
def engine(tmp_path):
    from airflow.models import import_all_models
    from airflow.models.base import Base

    import_all_models()
    engine = create_engine(f"sqlite:///{tmp_path / 'airflow.db'}")
    Base.metadata.create_all(engine)
    migrations.ensure_tables(engine)
    return engine
