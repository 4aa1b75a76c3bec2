"""Data set split_keys (bundle ``flux-tests``, specs/split_keys.xml): see tests/integration/test_splits.py."""

from airflow.sdk import DAG

from flux_provider.specs.factory import dag_for

dag: DAG = dag_for(__file__)
