"""For deployments that load plugins from AIRFLOW_HOME/plugins: the flux plugin (dashboard, API, throttle).

With the provider pip-installed the ``airflow.plugins`` entry point registers
the same plugin; Airflow keeps one of the two (plugins are unique by name).
"""

from flux_provider.plugin import FluxPlugin

__all__ = ["FluxPlugin"]
