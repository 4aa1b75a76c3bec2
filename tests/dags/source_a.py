"""Data set source_a (bundle ``flux-tests``, specs/source_a.xml): see tests/integration."""

from airflow.sdk import DAG

from flux_provider.specs.factory import dag_for

dag: DAG = dag_for(__file__)
