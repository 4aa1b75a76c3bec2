"""The cluster-shaped local stack (``up --cluster``): Airflow as a real deployment runs it.

Airflow's metadata DB on PostgreSQL, CeleryExecutor with Redis as the broker,
**two** schedulers (the throttle controller's lease decides which one acts),
**two** Celery workers that present themselves as two hosts (``flux-worker-1``
and ``flux-worker-2``: the name Airflow records for every task instance, the
Celery node name and the worker's own log server), a triggerer and the
dag-processor, beside the same S3, SQL Server stand-in and Hive services as
the embedded stack. Each worker host has a local disk of its own for export
files: the workers all stage under ``<run dir>/staging`` (their
``[flux] staging_dir``), but each runs in a mount namespace of its own where
that folder is ``<run dir>/hosts/<host>/staging``, so a file written on one
host is not there on the other, as between real hosts (its task logs too: the
API server reads them from the host's log server, as in a deployment without
remote logging); a UTS namespace with the host's name; and a network
namespace of its own, with an address of its own on a link to the machine
(``address``: the API server resolves the host names to them) and the
host's pipe of the stack's ports as its one way to the stack's services,
which listen on the machine's loopback only (``devstack.netpipe``). This
needs root, as ``unshare`` does; without it the workers share the machine's
folders and network. Each host also serves a queue named after itself beside
``default``.

Its metadata DB and its Celery broker are on the stack's PostgreSQL and Redis
(``devstack.databases``: the machine's servers where they answer, else private
ones in the run directory): a database of its own (``flux_<hash of the run
directory>``) and a Redis database index plus a key prefix of its own.

Celery's result backend is the metadata database (``db+postgresql``), which is
Airflow's own default and keeps task results out of the shared Redis.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from flux_devstack.service import Context, DevstackError

#: The workers' host names (what Airflow records as a task instance's hostname).
WORKER_HOSTS = ("flux-worker-1", "flux-worker-2")


def own_hosts() -> bool:
    """Whether the workers get hosts of their own (namespaces need root, as ``unshare`` does)."""
    return os.geteuid() == 0


def staging_dir(ctx: Context, host: str | None = None):
    """Where the workers stage export files (``host`` None), or what that folder is on worker ``host``
    (its own disk: the other host does not see it)."""
    return ctx.run_dir / "hosts" / host / "staging" if host else ctx.run_dir / "staging"


def network_dir(ctx: Context, host: str):
    """Where host ``host``'s network meets the machine's: one Unix socket per port (``devstack.netpipe``).
    Under the run directory, or under /tmp when that path is too long for a socket's (108 bytes)."""
    folder = ctx.run_dir / "hosts" / host / "net"
    if len(str(folder / "65535.sock")) < 100:
        return folder
    return Path("/tmp") / f"flux-net-{hashlib.sha1(str(ctx.run_dir).encode()).hexdigest()[:10]}" / host


@dataclass(frozen=True)
class HostAddress:
    """Worker host's link to the machine: a veth pair, ``link`` on the machine's side (``machine``) and
    ``eth0`` in the host (``host``), a /30 of 169.254.0.0/16 (link-local: no real network uses it)."""

    link: str
    machine: str
    host: str


def address(ctx: Context, host: str) -> HostAddress:
    """Host ``host``'s address: one /30 per worker in a /24 of this run directory's own."""
    digest = hashlib.sha1(str(ctx.run_dir).encode()).hexdigest()
    number = WORKER_HOSTS.index(host) + 1
    net, base = 1 + int(digest[14:16], 16) % 250, 4 * (number - 1)
    return HostAddress(f"fx{digest[:6]}h{number}", f"169.254.{net}.{base + 1}", f"169.254.{net}.{base + 2}")


def reachable_ports(ctx: Context) -> list[int]:
    """The ports a worker host reaches on the machine: every service of the stack (S3, the SQL Server
    stand-in, Hive, mail, Airflow's API server) and PostgreSQL and Redis; not the workers' own log servers."""
    ports = {port for name, port in ctx.ports.items() if not name.startswith("airflow_worker_log")}
    for url in (ctx.postgres_url, databases(ctx).broker_url):
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise DevstackError(
                f"the cluster stack's workers reach the machine's loopback only; {url} is elsewhere. Point "
                "$FLUX_POSTGRES_URL and $FLUX_REDIS_URL at servers on this machine"
            )
        ports.add(parts.port or {"postgresql": 5432, "redis": 6379}[parts.scheme.split("+")[0]])
    return sorted(ports)


def own_host(ctx: Context, host: str, command: list[str], logs: Path) -> list[str]:
    """``command`` on a host of its own, in namespaces where:

    * the staging folder and the task log folder ``logs`` are ``host``'s own disk (mount);
    * the host name is ``host`` (UTS);
    * the network (net) has a loopback, whose only way to the machine's services is the host's ``netpipe``,
      and ``eth0`` with the host's own ``address``, linked to the machine (which reaches the host's log
      server there). No file or loopback port of another host is reachable.

    The link goes away with the namespace. Needs root, as ``unshare`` does; without it the workers share
    the machine's disk and network."""
    if not own_hosts():
        return command
    q, ip = shlex.quote, address(ctx, host)
    ports = [str(p) for p in reachable_ports(ctx)]
    disks = ((staging_dir(ctx, host), staging_dir(ctx)), (ctx.run_dir / "hosts" / host / "logs", logs))
    machine = 'nsenter --net="/proc/$PPID/ns/net"'  # the machine's network: where the stack started us
    script = "\n".join(
        [
            *(f"mkdir -p {q(str(a))} {q(str(b))} && mount --bind {q(str(a))} {q(str(b))} || exit 1" for a, b in disks),
            f"hostname {q(host)} && ip link set lo up || exit 1",
            f"{machine} ip link del {ip.link} 2>/dev/null",  # a link left by an earlier try of this host
            f"ip link add eth0 type veth peer name {ip.link} netns $PPID && ip addr add {ip.host}/30 dev eth0 "
            f"&& ip link set eth0 up || exit 1",
            f"{machine} ip addr add {ip.machine}/30 dev {ip.link} && {machine} ip link set {ip.link} up || exit 1",
            f"{q(ctx.python)} -m flux_devstack.netpipe loopback {q(str(network_dir(ctx, host)))} {' '.join(ports)} &",
            # the pipe's last port answers once all are bound
            f"for _ in $(seq 200); do (: >/dev/tcp/127.0.0.1/{ports[-1]}) 2>/dev/null && break; sleep 0.05; done",
            'exec "$@"',
        ]
    )
    return ["unshare", "--mount", "--uts", "--net", "--propagation", "private", "bash", "-c", script, host, *command]


def resolving_hosts(ctx: Context, command: list[str]) -> list[str]:
    """``command`` where the worker hosts' names resolve to their addresses: a mount namespace whose
    /etc/hosts is the machine's plus theirs (as a container's is), so the API server reaches a host's log
    server by the name Airflow recorded for the task. Without own hosts, ``command`` as it is."""
    if not own_hosts():
        return command
    hosts = ctx.run_dir / "hosts" / "etc-hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    machine = Path("/etc/hosts").read_text() if Path("/etc/hosts").exists() else "127.0.0.1 localhost\n"
    hosts.write_text(machine.rstrip("\n") + "\n" + "".join(f"{address(ctx, h).host} {h}\n" for h in WORKER_HOSTS))
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hosts), *command]


@dataclass(frozen=True)
class ClusterDatabases:
    """Where one cluster stack keeps its metadata and its broker queues."""

    database: str  # the PostgreSQL database of this run directory
    sql_alchemy_conn: str
    broker_url: str
    key_prefix: str

    @property
    def result_backend(self) -> str:
        return "db+" + self.sql_alchemy_conn


def databases(ctx: Context) -> ClusterDatabases:
    digest = hashlib.sha1(str(ctx.run_dir).encode()).hexdigest()
    name = f"flux_{digest[:10]}"
    server = urlsplit(ctx.postgres_url)
    own = urlunsplit(("postgresql+psycopg2", server.netloc, f"/{name}", "", ""))
    redis = ctx.redis_url.rstrip("/")
    index = 1 + int(digest[10:14], 16) % 15  # 1..15: index 0 is where other users of the server look first
    return ClusterDatabases(name, own, f"{redis}/{index}", f"flux-{digest[:10]}:")


def ensure_database(ctx: Context, marker) -> None:
    """This stack's PostgreSQL database: kept across restarts, but made anew when the run directory is new
    (``marker``, a file in it, is missing): a database left by a deleted run directory of the same path holds
    connections encrypted with other secrets. A cluster stack's Redis keys go with it."""
    import psycopg2

    own = databases(ctx)
    url = ctx.postgres_url
    try:
        conn = psycopg2.connect(url, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        raise DevstackError(
            f"the stack needs PostgreSQL at {urlsplit(url).hostname}:{urlsplit(url).port or 5432} "
            f"($FLUX_POSTGRES_URL): {str(exc).strip()}. Start it (Debian: apt-get install postgresql; "
            "service postgresql start) or point $FLUX_POSTGRES_URL at a server where this login may create "
            "databases"
        ) from None
    fresh = not marker.exists()
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            if fresh:
                cursor.execute(f'DROP DATABASE IF EXISTS "{own.database}" WITH (FORCE)')
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (own.database,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{own.database}"')
    finally:
        conn.close()
    if fresh and ctx.cluster:
        _forget_queues(own)
    if fresh:
        marker.write_text(own.database + "\n")


def forget(ctx: Context) -> list[str]:
    """Drop this stack's PostgreSQL database and delete its Redis keys on a server it shares (``make clean``);
    a private server goes with the run directory. Returns what was removed."""
    import psycopg2

    own, removed = databases(ctx), []
    if "postgres" not in ctx.private:
        try:
            conn = psycopg2.connect(ctx.postgres_url, connect_timeout=5)
        except psycopg2.OperationalError as exc:
            raise DevstackError(
                f"cannot drop the stack's database {own.database}: PostgreSQL at {urlsplit(ctx.postgres_url).netloc} "
                f"does not answer ({str(exc).strip()}). Start it and run clean again"
            ) from None
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                # the stack's database and those named after it (the suite's own, ``<name>_suite``)
                cursor.execute(
                    "SELECT datname FROM pg_database WHERE datname = %s OR starts_with(datname, %s)",
                    (own.database, own.database + "_"),
                )
                for (name,) in cursor.fetchall():
                    cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                    removed.append(f"database {name}")
        finally:
            conn.close()
    if ctx.cluster and "redis" not in ctx.private:
        if deleted := _forget_queues(own):
            removed.append(f"{deleted} Redis keys {own.key_prefix}*")
    return removed


def _forget_queues(own: ClusterDatabases) -> int:
    """Delete the Redis keys under this stack's prefix (queued tasks of a stack that is gone)."""
    import redis

    client = redis.Redis.from_url(own.broker_url, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match=own.key_prefix + "*", count=500))
        if keys:
            client.delete(*keys)
        return len(keys)
    except redis.ConnectionError as exc:
        raise DevstackError(
            f"the cluster stack needs Redis at {own.broker_url} ($FLUX_REDIS_URL): {exc}. Start it (Debian: "
            "apt-get install redis-server) or point $FLUX_REDIS_URL at one"
        ) from None
    finally:
        client.close()


def airflow_settings(ctx: Context) -> dict[str, dict[str, str]]:
    """The airflow.cfg sections that make the embedded configuration a cluster's."""
    own = databases(ctx)
    return {
        "core": {"executor": "CeleryExecutor", "hostname_callable": "flux_devstack.hosts.hostname"},
        "database": {"sql_alchemy_conn": own.sql_alchemy_conn},
        "celery": {
            "broker_url": own.broker_url,
            "result_backend": own.result_backend,
            "worker_concurrency": "4",
        },
        "celery_broker_transport_options": {"global_keyprefix": own.key_prefix, "visibility_timeout": "21600"},
        # a try whose worker died is given up after 30 s (Airflow's default: 300) and retried elsewhere 5 s
        # later (the provider's default: 60); a task the dead worker had taken from the broker but not started
        # is sent again after 120 s in queued (Airflow's default: 600; the broker's own redelivery waits for
        # the visibility timeout, 6 hours)
        "scheduler": {"task_instance_heartbeat_timeout": "30", "task_queued_timeout": "120"},
        "flux": {"lost_try_retry_delay": "5"},
    }
