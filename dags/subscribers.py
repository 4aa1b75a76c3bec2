"""Airflow DAG for the data set subscribers, built from specs/subscribers.xml by flux_provider's DAG factory."""

from flux_provider.specs.factory import dag_for

dag = dag_for(__file__)
