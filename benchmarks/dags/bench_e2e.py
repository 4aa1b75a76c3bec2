"""Benchmark data set bench_e2e (bundle ``flux-bench``, specs/bench_e2e.xml): see e2e_bench.py."""

from airflow.sdk import DAG

from flux_provider.specs.factory import dag_for

dag: DAG = dag_for(__file__)
