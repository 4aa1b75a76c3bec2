"""Benchmark data set bench_source_3 (bundle ``flux-bench``, specs/bench_source_3.xml): see source_bench.py."""

from airflow.sdk import DAG

from flux_provider.specs.factory import dag_for

dag: DAG = dag_for(__file__)
