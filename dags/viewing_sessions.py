"""The data set viewing_sessions, built from specs/viewing_sessions.xml by flux_provider's DAG factory."""

from airflow.sdk import DAG

from flux_provider.specs.factory import dag_for

# The words "airflow" and "DAG" in this code (not only in a comment) are what Airflow's
# dag_discovery_safe_mode looks for before it parses a file.
dag: DAG = dag_for(__file__)
