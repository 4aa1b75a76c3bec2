"""The local stack: start services in dependency order, check them, find them again, stop them.

State lives in ``<run_dir>/state.json`` (mode 0600: it holds the stack's
generated secrets): ports, secrets and, per service, the PID, its start time
and its log. ``up`` holds an exclusive lock on the run directory, so two
callers never start two stacks in one place; a second ``up`` on a healthy
stack reuses it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from flux_devstack import databases
from flux_devstack import ports as port_alloc
from flux_devstack.airflow import (
    AirflowApiServer,
    AirflowDagProcessor,
    AirflowInit,
    AirflowScheduler,
    AirflowTriggerer,
    CeleryWorker,
    HostNetwork,
)
from flux_devstack.hive import HiveMetastore, SparkThriftServer
from flux_devstack.jars import ensure_s3a_jars
from flux_devstack.mail import MailSink
from flux_devstack.mssql import TdsStandIn
from flux_devstack.process import ProcessRecord, exit_code, spawn, stop, stop_owned, tail
from flux_devstack.s3 import SeaweedS3
from flux_devstack.service import Context, DevstackError, Service, ServiceFailed

log = logging.getLogger("flux_devstack")

#: Every service of the stack, in start order. Add new services (e.g. the SQL
#: Server stand-in for bcp) here; ``after`` expresses what each waits for.
SERVICES: list[Service] = [
    databases.PrivatePostgres(),
    SeaweedS3(),
    TdsStandIn(),
    MailSink(),
    HiveMetastore(),
    SparkThriftServer(),
    AirflowInit(),
    AirflowApiServer(),
    AirflowScheduler(),
    AirflowDagProcessor(),
]

#: The cluster-shaped stack (``up --cluster``, see ``devstack.cluster``): the same services, Airflow on
#: PostgreSQL with CeleryExecutor, two schedulers, a triggerer and two workers standing for two hosts.
CLUSTER_SERVICES: list[Service] = [
    databases.PrivateRedis(),
    *SERVICES[:-2],
    AirflowScheduler(1),
    AirflowScheduler(2),
    AirflowDagProcessor(),
    AirflowTriggerer(),
    HostNetwork(1),
    HostNetwork(2),
    CeleryWorker(1),
    CeleryWorker(2),
]

#: Set in every service's environment (and so inherited by everything it starts) to the run directory.
OWNER_ENV = "FLUX_DEVSTACK_OWNER"

#: Single ports every stack allocates (blocks come from ``Service.port_blocks``).
SINGLE_PORTS = (
    "postgres",
    "redis",
    "mssql",
    "smtp",
    "metastore",
    "hiveserver2",
    "airflow_api",
    "airflow_scheduler",
    "airflow_worker_log",
    "airflow_trigger_log",
)


def password_command(run_dir: Path | str) -> str:
    """The one command that prints the Airflow admin's password of the stack in ``run_dir``, runnable as printed
    from any folder and shell (absolute paths, no venv to activate)."""
    return f"{sys.executable} -m flux_devstack --run-dir {Path(run_dir).resolve()} env | grep FLUX_AIRFLOW_PASSWORD"


def default_run_dir() -> Path:
    return Path(os.environ.get("FLUX_DEVSTACK_DIR") or Path.cwd() / ".devstack").resolve()


def default_dags_folder() -> Path:
    return Path(os.environ.get("FLUX_DAGS_FOLDER") or Path.cwd() / "dags").resolve()


def _new_secrets() -> dict[str, str]:
    return {
        "s3_access_key": "flux" + secrets.token_hex(8),
        "s3_secret_key": secrets.token_urlsafe(24),
        "airflow_admin_password": secrets.token_urlsafe(12),
        "airflow_viewer_password": secrets.token_urlsafe(12),
        "airflow_secret_key": secrets.token_urlsafe(24),
        "airflow_jwt_secret": secrets.token_urlsafe(32),
        "airflow_fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "mssql_password": secrets.token_urlsafe(16),
    }


#: States of a service that a working stack may have.
UP = ("healthy", "done", "machine's")


@dataclass
class ServiceStatus:
    name: str
    port: int | None
    pid: int | None
    state: str  # healthy | unhealthy | dead | done | not started | machine's (a server the stack does not run)
    detail: str


class Stack:
    """One local stack rooted at ``run_dir``."""

    def __init__(
        self,
        run_dir: Path | None = None,
        dags_folder: Path | None = None,
        services: list[Service] | None = None,
        echo: Callable[[str], None] = print,
        dag_bundles: dict[str, Path | str] | None = None,
        cluster: bool | None = None,
    ):
        self.run_dir = Path(run_dir or default_run_dir()).resolve()
        self.state_file = self.run_dir / "state.json"
        state = self.load_state()
        # no folder given: $FLUX_DAGS_FOLDER, else the one the running stack serves, else ./dags
        running = None if os.environ.get("FLUX_DAGS_FOLDER") else state.get("dags_folder")
        self.dags_folder = Path(dags_folder or running or default_dags_folder()).resolve()
        # None: the bundles the running stack was started with (a plain `up` never drops them)
        self.dag_bundles = (
            None if dag_bundles is None else {name: _bundle_place(where) for name, where in dag_bundles.items()}
        )
        self.echo = echo
        # None: the shape the running stack was started with (a plain `up` never changes it)
        self.cluster = bool(state.get("cluster")) if cluster is None else cluster
        self.services = services if services is not None else CLUSTER_SERVICES if self.cluster else SERVICES

    # ----------------------------------------------------------------- state
    def load_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}

    def _save_state(self, state: dict) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.state_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def context(self, state: dict | None = None) -> Context:
        state = state if state is not None else self.load_state()
        if not state.get("ports"):
            raise DevstackError(f"no local stack in {self.run_dir}: run `python -m flux_devstack up`")
        ctx = Context(
            run_dir=self.run_dir,
            ports=state["ports"],
            secrets=state["secrets"],
            dags_folder=Path(state.get("dags_folder", self.dags_folder)),
            jars=[Path(j) for j in state.get("jars", [])],
            dag_bundles=state.get("dag_bundles", {}),
            cluster=bool(state.get("cluster")),
            postgres_url=state.get("postgres_url", databases.MACHINE_POSTGRES_URL),
            redis_url=state.get("redis_url", databases.MACHINE_REDIS_URL),
            private=tuple(state.get("private", ())),
        )
        for service in self.services:
            ctx.connections.update(service.connections(ctx))
        return ctx

    # ------------------------------------------------------------ lifecycle
    def up(self, timeout_scale: float = 1.0, *, restart: bool = False) -> Context:
        """Start every service (or reuse a healthy running stack) and return its context.

        A running stack that serves other DAG folders or has the other shape is stopped and started anew only
        with ``restart``; without it, :class:`DevstackError` says what differs."""
        with self._locked():
            state = self.load_state()
            if self.dag_bundles is None:
                self.dag_bundles = state.get("dag_bundles", {})
            same_dags = (
                state.get("dags_folder") == str(self.dags_folder)
                and state.get("dag_bundles", {}) == self.dag_bundles
                and bool(state.get("cluster")) == self.cluster
            )
            if state.get("processes") and same_dags:
                unhealthy = {s.name for s in self._status(state) if s.state not in UP}
                if state.get("mssql_seed", "") != os.environ.get("FLUX_MSSQL_SEED", ""):
                    self.echo(
                        f"FLUX_MSSQL_SEED changed ({state.get('mssql_seed') or 'none'} -> "
                        f"{os.environ.get('FLUX_MSSQL_SEED') or 'none'}): restarting the SQL Server "
                        "stand-in to load it (seeds run at every start; make them idempotent)"
                    )
                    unhealthy.add("mssql")
                if not unhealthy:
                    self.echo(f"reusing the healthy local stack in {self.run_dir}")
                    return self.context(state)
                restart = self._with_dependents(unhealthy)
                kept = [s.name for s in self.services if s.name not in restart]
                self.echo(f"restarting {', '.join(sorted(restart))} on the same ports; keeping {', '.join(kept)}")
                self._stop_all(state, only=restart)
                return self._start(state, timeout_scale, keep=set(kept))
            if state.get("processes"):
                change = self._change(state)
                if not restart:
                    raise DevstackError(
                        f"the stack in {self.run_dir} is running with {change}. Fix: pass the same options to "
                        "keep it, or add --restart to stop it and start it with the new ones"
                    )
                self.echo(f"restarting the stack with {change}")
                self._stop_all(state)
            return self._start(state, timeout_scale)

    def _change(self, state: dict) -> str:
        """What this ``up`` asks for that the running stack (``state``) does not have, in words."""
        shape = {True: "the cluster shape", False: "the embedded shape"}
        changes = [
            f"{what} {old} (this up asks for {new})"
            for what, old, new in (
                ("DAG folder", state.get("dags_folder"), str(self.dags_folder)),
                ("DAG bundles", state.get("dag_bundles", {}), self.dag_bundles),
                ("", shape[bool(state.get("cluster"))], shape[self.cluster]),
            )
            if old != new
        ]
        return "; ".join(c.strip() for c in changes)

    def _with_dependents(self, names: set[str]) -> set[str]:
        """``names`` and every service that starts after one of them (transitively)."""
        out = set(names)
        changed = True
        while changed:
            changed = False
            for service in self.services:
                if service.name not in out and not service.oneshot and set(service.after) & out:
                    out.add(service.name)
                    changed = True
        return out

    def _allocate_ports(self) -> dict[str, int]:
        """Free ports for every service, none of them claimed by another stack on this machine."""
        ports: dict[str, int] = {}
        with port_alloc.claiming(self.run_dir) as taken:
            for service in self.services:
                for key, offsets in service.port_blocks.items():
                    ports[key] = port_alloc.allocate_block(offsets, taken=taken)
            for key in SINGLE_PORTS:
                ports.setdefault(key, port_alloc.allocate(taken))
        return ports

    def _start(self, previous: dict, timeout_scale: float, keep: set[str] = frozenset()) -> Context:
        """Start the services; those in ``keep`` are running and healthy already (same ports)."""
        state = self._new_state(previous, keep)
        ctx = self.context(state)
        pending = [service for service in self.services if service.name not in keep and service.enabled(ctx)]
        healthy: set[str] = set(keep) | {service.name for service in self.services if not service.enabled(ctx)}
        listed = {service.name for service in self.services}  # `after` a service of the other shape: none
        started: dict[str, float] = {}
        last_error: dict[str, str] = {}
        try:
            while pending:
                for service in list(pending):
                    if service.name not in started:
                        if not set(service.after) & listed <= healthy:
                            continue
                        self._spawn(service, ctx, state)
                        started[service.name] = time.monotonic()
                        continue
                    if self._ready(service, ctx, state, last_error):
                        service.on_healthy(ctx)
                        healthy.add(service.name)
                        pending.remove(service)
                        took = time.monotonic() - started[service.name]
                        self.echo(f"  {service.name} ready in {took:.1f}s")
                    elif time.monotonic() - started[service.name] > service.ready_timeout * timeout_scale:
                        record = ProcessRecord.from_dict(state["processes"][service.name])
                        raise ServiceFailed(
                            service.name,
                            f"did not become healthy within {service.ready_timeout * timeout_scale:.0f}s "
                            f"(last check: {last_error.get(service.name, 'no answer')})",
                            record.log,
                            tail(record.log),
                        )
                time.sleep(0.5)
        except BaseException:
            self._stop_all(state, only=None if not keep else {s.name for s in self.services} - keep)
            raise
        return ctx

    def _new_state(self, previous: dict, keep: set[str]) -> dict:
        """The state a start writes before any service starts: ports, secrets, servers, jars."""
        state = {
            "run_dir": str(self.run_dir),
            "dags_folder": str(self.dags_folder),
            "dag_bundles": self.dag_bundles,
            # Secrets survive restarts (the Airflow DB's connections are encrypted with them);
            # secrets added by newer versions are filled in.
            "secrets": {**_new_secrets(), **previous.get("secrets", {})},
            "ports": previous["ports"] if keep else self._allocate_ports(),
            "processes": {name: raw for name, raw in previous.get("processes", {}).items() if name in keep},
            "started": previous.get("started", time.time()) if keep else time.time(),
            "mssql_seed": os.environ.get("FLUX_MSSQL_SEED", ""),
            "cluster": self.cluster,
        }
        servers = (
            {k: previous[k] for k in ("postgres_url", "redis_url", "private")}
            if keep and "postgres_url" in previous
            else databases.choose(state["ports"], cluster=self.cluster)
        )
        state.update(servers)
        for name in servers["private"]:
            self.echo(f"the stack runs a private {name} server (none of the machine's answers, or one was asked for)")
        if any(service.needs_s3a_jars for service in self.services):
            self.echo("checking the s3a jars (the first run downloads them once)")
            state["jars"] = [str(p) for p in ensure_s3a_jars()]
        self._save_state(state)
        return state

    def _spawn(self, service: Service, ctx: Context, state: dict) -> None:
        service.prepare(ctx)
        # the owner mark lets `down` find processes whose parent died (orphans)
        record = spawn(
            service.command(ctx),
            log=ctx.home("logs") / f"{service.name}.log",
            env={**service.environ(ctx), OWNER_ENV: str(self.run_dir)},
            cwd=ctx.home(service.name),
            stop_signal=service.stop_signal,
        )
        state["processes"][service.name] = record.to_dict()
        self._save_state(state)
        self.echo(f"starting {service.name} (pid {record.pid})")

    def _ready(self, service: Service, ctx: Context, state: dict, last_error: dict[str, str]) -> bool:
        record = ProcessRecord.from_dict(state["processes"][service.name])
        if service.oneshot:
            code = exit_code(record)
            if code is None:
                return False
            if code != 0:
                raise ServiceFailed(service.name, f"exited with code {code}", record.log, tail(record.log))
            return True
        if not record.alive():
            raise ServiceFailed(service.name, "exited during start-up", record.log, tail(record.log))
        try:
            service.check(ctx)
        except Exception as exc:  # any failure of a readiness probe means "not ready yet"
            last_error[service.name] = f"{type(exc).__name__}: {exc}"[:300]
            return False
        return True

    def _status(self, state: dict) -> list[ServiceStatus]:
        ctx = self.context(state)
        out = []
        for service in self.services:
            if not service.enabled(ctx):
                out.append(ServiceStatus(service.name, None, None, "machine's", "the stack uses the machine's server"))
                continue
            port = ctx.ports.get(service.port) if service.port else None
            raw = state.get("processes", {}).get(service.name)
            if raw is None:
                out.append(ServiceStatus(service.name, port, None, "not started", ""))
                continue
            record = ProcessRecord.from_dict(raw)
            if service.oneshot:
                out.append(ServiceStatus(service.name, port, record.pid, "done", "ran at start-up"))
            elif not record.alive():
                out.append(ServiceStatus(service.name, port, record.pid, "dead", f"see {record.log}"))
            else:
                try:
                    out.append(ServiceStatus(service.name, port, record.pid, "healthy", service.check(ctx)))
                except Exception as exc:  # report, don't raise: status must always print
                    out.append(
                        ServiceStatus(service.name, port, record.pid, "unhealthy", f"{type(exc).__name__}: {exc}"[:200])
                    )
        return out

    def status(self) -> list[ServiceStatus]:
        state = self.load_state()
        if not state.get("processes"):
            return [ServiceStatus(s.name, None, None, "not started", "") for s in self.services]
        return self._status(state)

    def env(self) -> dict[str, str]:
        """Environment a shell or test needs: AIRFLOW_HOME, connections as AIRFLOW_CONN_*, endpoints."""
        ctx = self.context()
        env = {"FLUX_DEVSTACK_DIR": str(self.run_dir)}
        for service in self.services:
            env.update(service.env(ctx))
        for conn_id, conn in sorted(ctx.connections.items()):
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn, separators=(",", ":"))
        return env

    def _stop_waves(self, names: list[str]) -> list[list[str]]:
        """``names`` in waves: a service comes after every one of them that depends on it (``after``,
        transitively); those this stack does not list (a stack of the other shape) come first."""
        after = {s.name: set(s.after) for s in self.services}
        left, waves = [n for n in names if n in after], [[n for n in names if n not in after]]
        while left:
            wave = [n for n in left if not any(n in after[other] for other in left)]
            waves.append(wave or left)  # a cycle (none today) stops all that is left at once
            left = [n for n in left if n not in waves[-1]]
        return [wave for wave in waves if wave]

    def down(self) -> list[int]:
        """Stop every process of the stack (tree by tree). Returns the PIDs signalled."""
        with self._locked():
            state = self.load_state()
            pids = self._stop_all(state)
            if state:
                state["processes"] = {}
                self._save_state(state)
            return pids

    def purge(self) -> list[str]:
        """Stop the stack and remove everything it wrote: its database and Redis keys on the machine's servers,
        a private PostgreSQL's data folder outside the run directory, and the run directory. Returns what went."""
        from flux_devstack import cluster

        if not self.run_dir.exists():
            return []
        self.down()
        state, removed = self.load_state(), []
        if state.get("ports"):
            ctx = self.context(state)
            removed += cluster.forget(ctx)
            removed += self._remove_leftovers(state, [service.name for service in self.services])
        port_alloc.release(self.run_dir)
        outside = databases.PrivatePostgres.outside_folder(self.run_dir)
        for folder in (outside, self.run_dir):
            if folder.exists():
                shutil.rmtree(folder)
                removed.append(str(folder))
        with contextlib.suppress(OSError):  # the machine's folder of private servers, once it holds none
            outside.parent.rmdir()
        return removed

    def _stop_all(self, state: dict, only: set[str] | None = None) -> list[int]:
        """Stop the services (``only`` those named), tree by tree; stopping all also stops orphans. A service
        stops after every service that starts after it; those of one wave stop at once (a slow one, such as
        the store, no longer adds its time to every other's)."""
        from concurrent.futures import ThreadPoolExecutor

        pids: list[int] = []
        known = [s.name for s in self.services]
        names = [n for n, raw in state.get("processes", {}).items() if raw and (only is None or n in only)]
        with ThreadPoolExecutor(max_workers=max(len(names), 1)) as pool:
            for wave in self._stop_waves(names):
                stopped = pool.map(lambda name: stop(ProcessRecord.from_dict(state["processes"][name])), wave)
                for name, signalled in zip(wave, stopped):
                    if signalled:
                        self.echo(f"stopped {name} ({len(signalled)} processes)")
                    pids.extend(signalled)
                    if only is not None:
                        del state["processes"][name]
        self._remove_leftovers(state, names)
        if only is None:
            workdirs = [self.run_dir / name for name in {*known, *state.get("processes", {})}]
            orphans = stop_owned(OWNER_ENV, str(self.run_dir), workdirs=workdirs)
            if orphans:
                self.echo(f"stopped {len(orphans)} orphaned processes (their parent service had died)")
            pids.extend(orphans)
        return pids

    def _remove_leftovers(self, state: dict, names: list[str]) -> list[str]:
        """Remove what the stopped services ``names`` leave outside the run directory (weed's sockets in the
        system's temp folder, named by port): of no use once they stop, and a restart on other ports would
        orphan them. Returns what went."""
        if not state.get("ports"):
            return []
        ctx = self.context(state)
        removed = []
        for service in self.services:
            if service.name in names:
                for leftover in service.leftovers(ctx):
                    leftover.unlink(missing_ok=True)
                    removed.append(str(leftover))
        return removed


def _bundle_place(where: Path | str) -> str:
    """A bundle's folder as an absolute path, or ``git:<repository>[#<subdir>]`` with a local repository's
    path made absolute."""
    text = str(where)
    if not text.startswith("git:"):
        return str(Path(text).resolve())
    repository, hash_, subdir = text[4:].partition("#")
    if "://" not in repository and not repository.startswith("git@"):
        repository = str(Path(repository).resolve())
    return f"git:{repository}{hash_}{subdir}"
