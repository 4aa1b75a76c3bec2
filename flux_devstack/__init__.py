"""The embedded local stack of real services for development, tests and the demo.

``python -m flux_devstack up | down | status | env | trigger DAG_ID``

S3 on SeaweedFS, a Hive metastore and Spark Thrift Server (HiveServer2) with
tables on ``s3a://``, and Airflow 3 (SQLite, LocalExecutor, scheduler,
dag-processor, API server), all on free loopback ports under one run directory,
each stopped by PID. Needs the ``devstack`` extra and a Java 17 runtime.
"""

from __future__ import annotations

__all__ = ["DevstackError", "ServiceFailed", "Stack"]


def __getattr__(name: str):
    # Lazy, so `python -m flux_devstack.<module>` does not import the whole stack first.
    if name == "Stack":
        from flux_devstack.stack import Stack

        return Stack
    if name in ("DevstackError", "ServiceFailed"):
        from flux_devstack import service

        return getattr(service, name)
    raise AttributeError(name)
