"""Airflow 3 itself: metadata DB on PostgreSQL (a database of the stack's own,
``devstack.databases``), LocalExecutor, API server (UI + REST + execution
API), scheduler and dag-processor; in the cluster stack CeleryExecutor, two
schedulers, a triggerer and two workers (see ``cluster``).

All settings live in ``<run>/airflow/airflow.cfg`` so any ``airflow`` command
run with ``AIRFLOW_HOME=<run>/airflow`` sees the same deployment. Login is
Airflow's SimpleAuthManager with user ``admin`` and a generated password
(``devstack env`` prints it). Connections from every service are imported into
the metadata DB, so they show in the UI.
"""

from __future__ import annotations

import configparser
import json
import os
from pathlib import Path

from flux_devstack import cluster
from flux_devstack.service import Context, Service

ADMIN_USER = "admin"
VIEWER_USER = "viewer"


def airflow_home(ctx: Context) -> Path:
    return ctx.home("airflow")


def airflow_env(ctx: Context) -> dict[str, str]:
    env = ctx.base_env()
    env["AIRFLOW_HOME"] = str(airflow_home(ctx))
    return env


def lineage_file(ctx: Context) -> Path:
    """Where the stack's OpenLineage events go (the file transport; the folder is made at start)."""
    folder = ctx.run_dir / "openlineage"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "events.jsonl"


def metadata_db(ctx: Context) -> str:
    """Airflow's metadata DB: the stack's own database on its PostgreSQL server (``devstack.databases``)."""
    return cluster.databases(ctx).sql_alchemy_conn


def _http_json(url: str, timeout: float = 5.0) -> dict:
    import httpx

    response = httpx.get(url, timeout=timeout)
    response.raise_for_status()
    return response.json()


GIT = "git:"  # a bundle given as ``git:<repository>[#<subdir>]`` is a GitDagBundle tracking ``main``


def _bundles(ctx: Context) -> list[dict]:
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    return [{"name": "dags-folder", "classpath": local, "kwargs": {}}] + [
        _git_bundle(name, where)
        if where.startswith(GIT)
        else {"name": name, "classpath": local, "kwargs": {"path": where}}
        for name, where in sorted(ctx.dag_bundles.items())
    ]


def _git_bundle(name: str, where: str) -> dict:
    """Airflow's GitDagBundle on a repository (a path or URL): versioned, each run keeps its commit."""
    repository, _, subdir = where[len(GIT) :].partition("#")
    kwargs = {"repo_url": repository, "tracking_ref": "main", "refresh_interval": 10}
    if subdir:
        kwargs["subdir"] = subdir
    return {"name": name, "classpath": "airflow.providers.git.bundles.git.GitDagBundle", "kwargs": kwargs}


def airflow_settings(ctx: Context) -> dict[str, dict[str, str]]:
    """The stack's airflow.cfg, section by section (the cluster shape adds its own on top)."""
    home = airflow_home(ctx)
    api = ctx.ports["airflow_api"]
    return {
        "core": {
            "dags_folder": str(ctx.dags_folder),
            "plugins_folder": str(home / "plugins"),
            "executor": "LocalExecutor",
            "parallelism": "8",
            "load_examples": "False",
            "fernet_key": ctx.secrets["airflow_fernet_key"],
            # admin, and a read-only viewer (used by the auth tests)
            "simple_auth_manager_users": f"{ADMIN_USER}:admin,{VIEWER_USER}:viewer",
            "simple_auth_manager_passwords_file": str(home / "passwords.json"),
            "execution_api_server_url": f"http://127.0.0.1:{api}/execution/",
        },
        "database": {"sql_alchemy_conn": metadata_db(ctx)},
        "api": {
            "host": "127.0.0.1",
            "port": str(api),
            "base_url": f"http://127.0.0.1:{api}",
            # two processes share the UI's, REST's and the tasks' execution API requests: one alone
            # fell 30 s behind on a burst of 200 triggers on CI
            "workers": "2",
            "secret_key": ctx.secrets["airflow_secret_key"],
        },
        "api_auth": {"jwt_secret": ctx.secrets["airflow_jwt_secret"]},
        "logging": {
            "base_log_folder": str(home / "logs"),
            "worker_log_server_port": str(ctx.ports["airflow_worker_log"]),
            "trigger_log_server_port": str(ctx.ports["airflow_trigger_log"]),
        },
        "scheduler": {
            "enable_health_check": "True",
            "scheduler_health_check_server_host": "127.0.0.1",
            "scheduler_health_check_server_port": str(ctx.ports["airflow_scheduler"]),
        },
        "dag_processor": {
            "refresh_interval": "15",
            "dag_bundle_config_list": json.dumps(_bundles(ctx)),
            # the stack's own clones of git bundles (Airflow's default, /tmp/airflow/dag_bundles, is
            # shared by every Airflow on the machine: two stacks with a bundle of one name would mix)
            "dag_bundle_storage_path": str(home / "dag_bundles"),
        },
        **_flux_mail_and_lineage(ctx),
    }


def _flux_mail_and_lineage(ctx: Context) -> dict[str, dict[str, str]]:
    return {
        # the throttle controller's period (default 60 s): short here so tests see it act; the host
        # limit's first mode (FLUX_HOST_LIMIT=off: the suite's stacks, but for the burst test); export
        # files under the stack's own folder, never in a folder every stack of the machine shares
        "flux": {
            "throttle_period": "10",
            "host_limit": os.environ.get("FLUX_HOST_LIMIT", "adaptive"),
            "staging_dir": str(ctx.run_dir / "staging"),
        },
        # e-mail (alerts from places that cannot read connections, like deadline callbacks) to the sink
        "smtp": {
            "smtp_host": "127.0.0.1",
            "smtp_port": str(ctx.ports["smtp"]),
            "smtp_starttls": "False",
            "smtp_ssl": "False",
            "smtp_mail_from": "flux-devstack@localhost",
        },
        # every task's and run's OpenLineage events, one JSON per line
        "openlineage": {
            "namespace": "flux-devstack",
            "transport": json.dumps({"type": "file", "log_file_path": str(lineage_file(ctx)), "append": True}),
        },
    }


class AirflowInit(Service):
    """One-shot: write airflow.cfg, migrate the DB, import the stack's connections."""

    name = "airflow-init"
    after = ("postgres", "redis")  # the private servers, where the stack runs them
    oneshot = True
    ready_timeout = 300.0

    def prepare(self, ctx: Context) -> None:
        home = airflow_home(ctx)
        (home / "plugins").mkdir(exist_ok=True)
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read_dict(airflow_settings(ctx))
        cluster.ensure_database(ctx, marker=home / "metadata-database")
        if ctx.cluster:
            for section, values in cluster.airflow_settings(ctx).items():
                cfg.read_dict({section: values})
        cfg_path = home / "airflow.cfg"
        with open(cfg_path, "w") as fh:
            cfg.write(fh)
        cfg_path.chmod(0o600)
        passwords = {
            ADMIN_USER: ctx.secrets["airflow_admin_password"],
            VIEWER_USER: ctx.secrets["airflow_viewer_password"],
        }
        for name, payload in (("passwords.json", passwords), ("connections.json", ctx.connections)):
            path = home / name
            path.write_text(json.dumps(payload, indent=2))
            path.chmod(0o600)

    def environ(self, ctx: Context) -> dict[str, str]:
        return airflow_env(ctx)

    def command(self, ctx: Context) -> list[str]:
        # Pools the data-set specs name exist before the scheduler starts: a task in a missing pool never runs.
        # (a git bundle's pools are synced where its repository is deployed from, like a cluster's)
        folders = [str(ctx.dags_folder), *(w for w in ctx.dag_bundles.values() if not w.startswith(GIT))]
        script = (
            '"$0" -m airflow db migrate && "$0" -m airflow connections import --overwrite "$1" && '
            'shift && "$0" -m flux_provider.specs pools sync "$@"'
        )
        return ["sh", "-c", script, ctx.python, str(airflow_home(ctx) / "connections.json"), *folders]

    def check(self, ctx: Context) -> str:
        return "database migrated, connections imported, pools synced"


class _AirflowComponent(Service):
    after = ("airflow-init",)
    ready_timeout = 180.0
    component = ""

    def environ(self, ctx: Context) -> dict[str, str]:
        return airflow_env(ctx)

    def command(self, ctx: Context) -> list[str]:
        return [ctx.python, "-m", "airflow", self.component]

    def health(self, ctx: Context) -> dict:
        return _http_json(ctx.url("airflow_api", "/api/v2/monitor/health"))


class AirflowApiServer(_AirflowComponent):
    name = "airflow-api-server"
    port = "airflow_api"
    component = "api-server"

    def command(self, ctx: Context) -> list[str]:
        command = super().command(ctx)
        return cluster.resolving_hosts(ctx, command) if ctx.cluster else command

    def check(self, ctx: Context) -> str:
        status = self.health(ctx)["metadatabase"]["status"]
        if status != "healthy":
            raise RuntimeError(f"metadatabase is {status}")
        return f"UI {ctx.url('airflow_api')}"

    def env(self, ctx: Context) -> dict[str, str]:
        return {
            "AIRFLOW_HOME": str(airflow_home(ctx)),
            "FLUX_AIRFLOW_URL": ctx.url("airflow_api"),
            "FLUX_AIRFLOW_USER": ADMIN_USER,
            "FLUX_AIRFLOW_PASSWORD": ctx.secrets["airflow_admin_password"],
            "FLUX_AIRFLOW_VIEWER": VIEWER_USER,
            "FLUX_AIRFLOW_VIEWER_PASSWORD": ctx.secrets["airflow_viewer_password"],
            # the metadata DB (SQLAlchemy URL), for tests that read what Airflow recorded
            "FLUX_AIRFLOW_DB": metadata_db(ctx),
            # its server (a login that may create databases: the suite's DB-API engine tests use one); not
            # FLUX_POSTGRES_URL, which `up` reads as the caller's choice: a shell that evaluated `env` would
            # then make a restart look for a private server at an address that is no longer one
            "FLUX_STACK_POSTGRES_URL": ctx.postgres_url,
            # the (first) scheduler's health endpoint: 200 while its heartbeat is recent
            "FLUX_SCHEDULER_HEALTH_URL": f"http://127.0.0.1:{ctx.ports['airflow_scheduler']}/health",
        }


class AirflowScheduler(_AirflowComponent):
    """A scheduler (the cluster stack runs two: ``airflow-scheduler`` and ``airflow-scheduler-2``)."""

    component = "scheduler"

    def __init__(self, number: int = 1):
        self.name = "airflow-scheduler" if number == 1 else f"airflow-scheduler-{number}"
        self.port = "airflow_scheduler" if number == 1 else f"airflow_scheduler_{number}"
        self.port_blocks = {} if number == 1 else {self.port: (0,)}

    def environ(self, ctx: Context) -> dict[str, str]:
        env = airflow_env(ctx)
        env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"] = str(ctx.ports[self.port])
        return env

    def command(self, ctx: Context) -> list[str]:
        # Under Celery no task runs in a scheduler, so it has no logs to serve. Its log server would be a
        # forked child holding the scheduler's database connections: a scheduler killed alone would then
        # keep its transaction open (the pools' row locks) and stop every other scheduler.
        return [*super().command(ctx), "--skip-serve-logs"] if ctx.cluster else super().command(ctx)

    def check(self, ctx: Context) -> str:
        import httpx

        httpx.get(ctx.url(self.port, "/health"), timeout=5).raise_for_status()
        return "heartbeat ok"


class AirflowTriggerer(_AirflowComponent):
    """Runs deferred tasks' triggers (the cluster stack; Airflow's home page shows it as up)."""

    name = "airflow-triggerer"
    after = ("airflow-init", "airflow-api-server")
    component = "triggerer"

    def check(self, ctx: Context) -> str:
        status = self.health(ctx)["triggerer"]["status"]
        if status != "healthy":
            raise RuntimeError(f"triggerer heartbeat is {status}")
        return "heartbeat ok"


class AirflowDagProcessor(_AirflowComponent):
    name = "airflow-dag-processor"
    after = ("airflow-init", "airflow-api-server")
    component = "dag-processor"

    def check(self, ctx: Context) -> str:
        status = self.health(ctx)["dag_processor"]["status"]
        if status != "healthy":
            raise RuntimeError(f"dag processor heartbeat is {status}")
        return f"parsing {ctx.dags_folder}"


class HostNetwork(Service):
    """The machine's side of worker host ``flux-worker-<n>``'s network: the stack's ports as Unix sockets
    (``devstack.netpipe gateway``), the host's only way to them (they listen on the machine's loopback).
    SIGSTOP it and the host is cut off while its processes live on."""

    def __init__(self, number: int):
        self.host = cluster.WORKER_HOSTS[number - 1]
        self.name = f"{self.host}-network"

    def command(self, ctx: Context) -> list[str]:
        ports = [str(p) for p in cluster.reachable_ports(ctx)]
        return [
            ctx.python,
            "-m",
            "flux_devstack.netpipe",
            "gateway",
            str(cluster.network_dir(ctx, self.host)),
            *ports,
        ]

    def check(self, ctx: Context) -> str:
        import socket

        sock = cluster.network_dir(ctx, self.host) / f"{ctx.ports['airflow_api']}.sock"
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(2.0)
            conn.connect(str(sock))
        return f"{len(cluster.reachable_ports(ctx))} ports through {sock.parent}"


class CeleryWorker(Service):
    """One Celery worker on host ``flux-worker-<n>`` (its own disk, name and network: ``cluster.own_host``)."""

    ready_timeout = 120.0

    def __init__(self, number: int):
        self.number, self.host = number, cluster.WORKER_HOSTS[number - 1]
        self.name = f"airflow-worker-{number}"
        self.after = ("airflow-init", "airflow-api-server", f"{self.host}-network")
        self.port = f"airflow_worker_log_{number}"
        self.port_blocks = {self.port: (0,)}

    def environ(self, ctx: Context) -> dict[str, str]:
        env = airflow_env(ctx)
        env["FLUX_HOSTNAME"] = self.host
        env["AIRFLOW__FLUX__STAGING_DIR"] = str(cluster.staging_dir(ctx))  # each host's own disk there (own_host)
        if not cluster.own_hosts():  # hosts of their own each serve logs on the one port the API server asks
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(ctx.ports[self.port])
        return env

    def command(self, ctx: Context) -> list[str]:
        queues = f"default,{self.host}"  # Airflow's [operators] default_queue, and the host's own
        worker = [
            ctx.python,
            "-m",
            "airflow",
            "celery",
            "worker",
            "-q",
            queues,
            "--celery-hostname",
            f"celery@{self.host}",
        ]
        return cluster.own_host(ctx, self.host, worker, logs=airflow_home(ctx) / "logs")

    def check(self, ctx: Context) -> str:
        from celery import Celery

        own = cluster.databases(ctx)
        app = Celery(broker=own.broker_url, broker_transport_options={"global_keyprefix": own.key_prefix})
        try:
            answers = app.control.ping(destination=[f"celery@{self.host}"], timeout=2.0)
        finally:
            app.close()
        if not answers:
            raise RuntimeError(f"celery@{self.host} does not answer a ping on {own.broker_url}")
        return f"celery@{self.host}, broker {own.broker_url}"
