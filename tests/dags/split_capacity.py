"""Data set split_capacity (bundle ``flux-tests``, specs/split_capacity.xml): see tests/integration."""

from airflow.sdk import DAG

from flux_provider.specs.factory import dag_for

dag: DAG = dag_for(__file__)
