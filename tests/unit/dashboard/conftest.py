"""The dashboard's SQL-level tests use the throttle tests' database: Airflow's tables with the throttle's."""

from tests.unit.throttle.conftest import engine  # noqa: F401
