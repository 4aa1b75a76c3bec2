"""``[core] hostname_callable`` of the cluster stack: each worker names the host it stands for.

Airflow records this name on every task instance it runs (``TaskInstance.hostname``), so two
workers on one machine show up as the two hosts they stand for (``$FLUX_HOSTNAME``).
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("FLUX_HOSTNAME") or socket.getfqdn()
