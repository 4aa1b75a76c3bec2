"""Data set source_b (bundle ``flux-tests``, specs/source_b.xml): see tests/integration."""

from airflow.sdk import DAG

from flux_provider.specs.factory import dag_for

dag: DAG = dag_for(__file__)
