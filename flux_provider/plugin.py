"""The flux Airflow plugin (UI dashboard and throttle API are mounted here as they land).

Loaded through the ``airflow.plugins`` entry point when the provider is
pip-installed; Airflow's default ``lazy_discover_providers`` does not load
plugins declared only in provider info, so both registrations exist.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class FluxPlugin(AirflowPlugin):
    """Registers the ``flux`` plugin with Airflow."""

    name = "flux"
