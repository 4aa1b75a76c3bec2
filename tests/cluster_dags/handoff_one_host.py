"""Data set handoff_one_host (bundle ``flux-cluster-tests``, specs/handoff_one_host.xml): see test_cluster.py."""

from airflow.sdk import DAG

from flux_provider.specs.factory import dag_for

dag: DAG = dag_for(__file__)
