"""Benchmark data set bench_capacity (bundle ``flux-bench``, specs/bench_capacity.xml): see adaptive_bench.py."""

from airflow.sdk import DAG

from flux_provider.specs.factory import dag_for

dag: DAG = dag_for(__file__)
