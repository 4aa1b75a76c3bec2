"""The embedded local stack of real services for development, tests and the demo.

``python -m flux_provider.devstack up | down | status | env | trigger DAG_ID``

S3 on SeaweedFS, a Hive metastore and Spark Thrift Server (HiveServer2) with
tables on ``s3a://``, and Airflow 3 (SQLite, LocalExecutor, scheduler,
dag-processor, API server), all on free loopback ports under one run directory,
each stopped by PID. Needs the ``devstack`` extra and a Java 17 runtime.
"""

from flux_provider.devstack.service import DevstackError, ServiceFailed
from flux_provider.devstack.stack import Stack

__all__ = ["DevstackError", "ServiceFailed", "Stack"]
