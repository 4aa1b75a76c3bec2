"""The flux Airflow plugin: the data-set dashboard and throttle API, and the throttle controller.

* ``fastapi_apps``: ``/flux`` in the API server (dashboard page and REST API,
  behind Airflow's auth; see :mod:`flux_provider.dashboard.api`);
* ``external_views``: "Data sets" in the UI's Browse menu, showing that page;
* ``listeners``: starts the throttle controller in the scheduler;
* ``deadline_references``: :class:`~flux_provider.deadlines.FinishBy` (a spec's ``<deadline finishBy=>``);
* ``timetables``: the calendar-aware and the partition cron timetables of :mod:`flux_provider.specs.timetable`.

Loading it also imports the DAG factory (its operators) and compiles the spec
schema. Airflow's DAG processor loads plugins once, then forks a child per DAG
file: the children inherit both, so a flux DAG file pays only for reading its
spec and building its DAG, at every parse of every file.

Loaded through the ``airflow.plugins`` entry point when the provider is
pip-installed (Airflow's default ``lazy_discover_providers`` does not load
plugins declared only in provider info). Deployments that load plugins from
``AIRFLOW_HOME/plugins`` can use ``plugins/flux_plugin.py`` instead; when both
are present Airflow keeps one (plugins are unique by name).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from flux_provider.dashboard.api import app
from flux_provider.deadlines import FinishBy
from flux_provider.specs import factory as _dag_factory  # noqa: F401 - see the docstring
from flux_provider.specs import parser
from flux_provider.specs.timetable import CalendarCronDataInterval, CalendarCronTrigger, PartitionCron
from flux_provider.throttle import listener

parser.preload()


class FluxPlugin(AirflowPlugin):
    """Registers the ``flux`` plugin with Airflow."""

    name = "flux"
    fastapi_apps = [{"app": app, "url_prefix": "/flux", "name": "flux data sets"}]
    external_views = [
        {
            "name": "Data sets",
            "href": "/flux/",
            "destination": "nav",
            "category": "browse",
            "url_route": "flux-datasets",
        }
    ]
    listeners = [listener]
    deadline_references = [FinishBy]
    timetables = [CalendarCronTrigger, CalendarCronDataInterval, PartitionCron]
