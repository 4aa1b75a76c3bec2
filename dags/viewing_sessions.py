"""Airflow DAG for the data set viewing_sessions, built from specs/viewing_sessions.xml by flux_provider's DAG factory."""

from flux_provider.specs.factory import dag_for

dag = dag_for(__file__)
