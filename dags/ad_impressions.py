"""Airflow DAG for the data set ad_impressions, built from specs/ad_impressions.xml by flux_provider's DAG factory."""

from flux_provider.specs.factory import dag_for

dag = dag_for(__file__)
