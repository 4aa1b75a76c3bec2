"""Adaptive per-data-set throttling: the limit algorithm, the controller that sets Airflow pools, the API."""
