"""flux_provider: an Apache Airflow 3 provider for a SQL Server -> S3 -> Hive ETL chain.

The provider registers itself with Airflow through the ``apache_airflow_provider``
entry point (:func:`get_provider_info`) and its UI/API plugin through the
``airflow.plugins`` entry point (:class:`flux_provider.plugin.FluxPlugin`).
"""

from __future__ import annotations

__version__ = "1.1.0.dev0"

PACKAGE_NAME = "airflow-provider-flux"

#: The ``[flux]`` options the provider reads: name -> (description, type, default).
CONFIG_OPTIONS = {
    "staging_dir": (
        "Folder for export files in file mode (one sub-folder per data set and run).",
        "string",
        "/tmp/flux-staging",
    ),
    "lost_try_retry_delay": (
        "Seconds before Airflow retries a try that ended without reaching the recovery rules (killed by a "
        "signal or the OOM killer, its worker or heartbeat lost). An operator's own retry_delay wins.",
        "float",
        "60",
    ),
    "lost_try_budget": (
        "Tries of one flux task instance that may be lost to the orchestrator (killed, not started, its heartbeat "
        "or report lost) and given back: they spend neither Airflow's retries nor the recovery rules'.",
        "integer",
        "3",
    ),
    "host_limit": (
        "adaptive: the throttle controller lowers the scheduler's task limit (the executors' parallelism, never "
        "above [core] parallelism) when the Airflow host strains (heartbeat lag, queued-to-running time, load, "
        "lost tries) and raises it back when healthy; off: the executors keep [core] parallelism.",
        "string",
        "adaptive",
    ),
    "throttle_period": (
        "Seconds between two decisions of the throttle controller (in the scheduler). Make it "
        "at least as long as a data set's tasks usually run.",
        "float",
        "60",
    ),
    "s3_connect_timeout": ("Seconds to connect to S3 before a try fails as 'connection'.", "float", "5"),
    "s3_read_timeout": (
        "Seconds to wait for an S3 answer before a try fails as 'connection' (a frozen "
        "endpoint fails in about s3_max_attempts x this).",
        "float",
        "15",
    ),
    "s3_max_attempts": (
        "Attempts per S3 request (botocore's standard retry mode) before the try fails and the recovery rules decide.",
        "integer",
        "2",
    ),
}


OPERATOR_MODULES = [
    "flux_provider.operators.bcp_export",
    "flux_provider.operators.s3_chunk_upload",
    "flux_provider.operators.bcp_to_s3",
    "flux_provider.operators.split_plan",
    "flux_provider.operators.publish_run",
    "flux_provider.operators.hive_transform",
    "flux_provider.operators.partition_refresh",
]
HOOK_MODULES = [
    "flux_provider.hooks.bcp",
    "flux_provider.hooks.dbapi_export",
    "flux_provider.hooks.s3_chunk_upload",
    "flux_provider.hooks.hive_session",
    "flux_provider.hooks.s3_client",
]


def _config() -> dict:
    """The ``[flux]`` section: `airflow config list` shows it, and every read falls back to its default."""
    options = {
        name: {"description": text, "version_added": "0.1.0", "type": kind, "example": None, "default": default}
        for name, (text, kind, default) in CONFIG_OPTIONS.items()
    }
    return {
        "flux": {
            "description": "flux_provider: staging files, the throttle controller and the S3 client.",
            "options": options,
        }
    }


def get_provider_info() -> dict:
    """Describe the provider to Airflow's ProvidersManager (``airflow providers list``)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Flux",
        "description": (
            "Media ETL chain for Airflow 3: SQL Server bulk copy (bcp/freebcp) export, "
            "Hive-exact chunked S3 upload, Hive transforms and partition refresh over "
            "HiveServer2, adaptive per-data-set throttling pools and rule-based recovery."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Flux",
                "external-doc-url": "https://airflow-provider-flux.readthedocs.io/",
                "tags": ["software"],
            },
        ],
        # BcpHook uses the microsoft-mssql provider's ``mssql`` connection type and the Hive steps the
        # apache-hive provider's ``hiveserver2``/``hive_metastore``: no connection type of our own.
        "operators": [{"integration-name": "Flux", "python-modules": OPERATOR_MODULES}],
        "hooks": [{"integration-name": "Flux", "python-modules": HOOK_MODULES}],
        "connection-types": [],
        "config": _config(),
        "plugins": [
            {"name": "flux", "plugin-class": "flux_provider.plugin.FluxPlugin"},
        ],
    }
