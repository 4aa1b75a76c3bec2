"""What a local-stack service is: a process, a readiness check and the connections it offers.

Adding a service (for example the SQL Server stand-in for bcp) means writing
one :class:`Service` subclass and listing it in ``stack.SERVICES``: it names the
ports it needs, writes its config in :meth:`Service.prepare`, gives its command
line, answers a *real* request in :meth:`Service.check`, and declares the Airflow
connections that point at it in :meth:`Service.connections` (the Airflow
service stores them in the metadata DB and :command:`devstack env` exports them).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class DevstackError(RuntimeError):
    """A service could not be started, or is not healthy. The message says which and why."""


class ServiceFailed(DevstackError):
    def __init__(self, service: str, reason: str, log: str, log_tail: str):
        self.service, self.reason, self.log, self.log_tail = service, reason, log, log_tail
        super().__init__(
            f"devstack service {service!r} {reason}.\n--- last lines of {log} ---\n{log_tail or '(log is empty)'}\n---"
        )


@dataclass
class Context:
    """Everything a service needs to configure and start itself, shared by all services."""

    run_dir: Path
    ports: dict[str, int]
    secrets: dict[str, str]
    dags_folder: Path
    jars: list[Path] = field(default_factory=list)
    #: Extra Airflow DAG bundles (name -> folder), next to the dags folder.
    dag_bundles: dict[str, str] = field(default_factory=dict)
    #: Every service's Airflow connections (conn_id -> connection dict), filled by the stack.
    connections: dict[str, dict] = field(default_factory=dict)
    #: The cluster-shaped stack (Celery, two schedulers, two workers): see ``devstack.cluster``.
    cluster: bool = False
    #: The PostgreSQL server of Airflow's metadata and the Redis of the cluster's broker (``devstack.databases``).
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379"
    #: The private servers this stack runs itself (where the machine has none): ``postgres``, ``redis``.
    private: tuple[str, ...] = ()

    @property
    def python(self) -> str:
        return sys.executable

    def home(self, service: str) -> Path:
        path = self.run_dir / service
        path.mkdir(parents=True, exist_ok=True)
        return path

    def url(self, port_name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[port_name]}{path}"

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The stack must not inherit a caller's Airflow/AWS settings.
        for key in list(env):
            if key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AWS_")) or key == "AIRFLOW_HOME":
                del env[key]
        bin_dir = os.path.dirname(self.python)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        return env


class Service:
    """Base class; subclasses set ``name`` and implement ``command`` and ``check``."""

    name: str = ""
    #: Names of services that must be healthy before this one starts.
    after: tuple[str, ...] = ()
    #: Key into ``Context.ports`` of the port shown by ``status`` (None: no port).
    port: str | None = None
    #: Extra port keys this service needs allocated: key -> list of offsets from its base.
    port_blocks: Mapping[str, tuple[int, ...]] = {}
    #: A one-shot service runs to completion; healthy means it exited 0.
    oneshot: bool = False
    #: Seconds to wait for the service to become healthy.
    ready_timeout: float = 120.0
    #: True if the service needs the s3a jars (``Context.jars``).
    needs_s3a_jars: bool = False
    #: Sent to the service's process alone before its tree gets SIGTERM (0: none).
    stop_signal: int = 0

    def enabled(self, ctx: Context) -> bool:
        """Whether this stack runs the service (a private server only where the machine has none)."""
        return True

    def prepare(self, ctx: Context) -> None:
        """Write config files under ``ctx.home(self.name)``; called before ``command``."""

    def command(self, ctx: Context) -> list[str]:
        raise NotImplementedError

    def environ(self, ctx: Context) -> dict[str, str]:
        return ctx.base_env()

    def check(self, ctx: Context) -> str:
        """Make a real request; return a short detail on success, raise if not ready."""
        raise NotImplementedError

    def on_healthy(self, ctx: Context) -> None:
        """One-time set-up once healthy (e.g. create buckets). Must be idempotent."""

    def connections(self, ctx: Context) -> dict[str, dict]:
        """Airflow connections (conn_id -> connection dict) that point at this service."""
        return {}

    def env(self, ctx: Context) -> dict[str, str]:
        """Environment variables a shell or test needs to use this service."""
        return {}

    def leftovers(self, ctx: Context) -> list[Path]:
        """Files the service writes outside the run directory, which ``clean`` removes once it is stopped."""
        return []


def require_binary(name: str, service: str, fix: str) -> str:
    """Find ``name`` next to this Python (a venv's bin) or on PATH, or say how to install it."""
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if not path:
        raise DevstackError(f"devstack service {service!r} needs {name!r} on PATH. Fix: {fix}")
    return path
