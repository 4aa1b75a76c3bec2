"""Where the stack keeps Airflow's metadata (PostgreSQL) and the cluster's Celery queues (Redis).

Both come from the machine's server where one answers (``$FLUX_POSTGRES_URL``,
default ``postgresql://postgres@127.0.0.1:5432/postgres``, a login allowed to
create databases; ``$FLUX_REDIS_URL``, default ``redis://127.0.0.1:6379``).
Where none answers (or the variable says ``private``), the stack runs a private server of its own in the run
directory on a free port (:class:`PrivatePostgres`, :class:`PrivateRedis`),
stopped by ``down`` like every other service. PostgreSQL's server programs
come from Debian's ``postgresql`` package (``scripts/system-deps.sh``
installs it); they refuse to run as root, so a private server runs as the
unprivileged ``postgres`` user the package creates.

A stack never disturbs a server's other users: its metadata lives in a
database of its own (``flux_<hash of the run directory>``), its queues in a
Redis database index with a key prefix of its own.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from flux_devstack.service import Context, DevstackError, Service

MACHINE_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MACHINE_REDIS_URL = "redis://127.0.0.1:6379"
#: The unprivileged owner of a private PostgreSQL (Debian's postgresql package creates it).
POSTGRES_USER = "postgres"
#: ``$FLUX_POSTGRES_URL`` / ``$FLUX_REDIS_URL`` value that asks for a private server even where the machine has one.
PRIVATE = "private"
FIX_POSTGRES = "apt-get install postgresql (its server programs; make does it as root), or set $FLUX_POSTGRES_URL"


def postgres_answers(url: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except psycopg2.OperationalError:
        return False
    return True


def redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def choose(ports: dict[str, int], *, cluster: bool) -> dict[str, str | list[str]]:
    """Which servers a new stack uses: ``{"postgres_url", "redis_url", "private": [services to run]}``.

    A URL given in the environment is used as it is (a wrong one fails at start with its own error), and
    ``private`` asks for a private server; else the machine's server if it answers, else a private one on the
    stack's own port."""
    private: list[str] = []
    postgres = os.environ.get("FLUX_POSTGRES_URL") or MACHINE_POSTGRES_URL
    if postgres == PRIVATE or ("FLUX_POSTGRES_URL" not in os.environ and not postgres_answers(postgres)):
        postgres = f"postgresql://{POSTGRES_USER}@127.0.0.1:{ports['postgres']}/postgres"
        private.append(PrivatePostgres.name)
    redis = os.environ.get("FLUX_REDIS_URL") or MACHINE_REDIS_URL
    # only the cluster shape has a broker: the embedded stack never probes for one
    if cluster and (redis == PRIVATE or ("FLUX_REDIS_URL" not in os.environ and not redis_answers(redis))):
        redis = f"redis://127.0.0.1:{ports['redis']}"
        private.append(PrivateRedis.name)
    return {"postgres_url": postgres, "redis_url": redis, "private": private}


def postgres_bin(program: str) -> str:
    """A PostgreSQL server program (``initdb``, ``postgres``): Debian keeps them off PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"), key=_version) or [shutil.which(program)]
    if not found[-1]:
        raise DevstackError(f"devstack service 'postgres' needs PostgreSQL's {program!r}. Fix: {FIX_POSTGRES}")
    return found[-1]


def _version(path: str) -> tuple[int, ...]:
    number = Path(path).parent.parent.name
    return tuple(int(p) for p in number.split(".") if p.isdigit())


def _as_owner(argv: list[str]) -> list[str]:
    """``argv`` as the unprivileged owner when this process is root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return argv
    try:
        pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        raise DevstackError(
            f"devstack service 'postgres' runs PostgreSQL as the unprivileged user {POSTGRES_USER!r}, which does not "
            f"exist. Fix: {FIX_POSTGRES} (the package creates the user)"
        ) from None
    return ["setpriv", f"--reuid={POSTGRES_USER}", f"--regid={POSTGRES_USER}", "--init-groups", *argv]


class PrivatePostgres(Service):
    """A PostgreSQL server of the stack's own, in ``<run dir>/postgres/data`` (kept across ``up``/``down``).

    Tuned for a throw-away development database: no fsync (a crash of the machine, not of the server, can lose
    it; ``make clean`` and ``up`` make it anew). Stopped with SIGINT, PostgreSQL's fast shutdown."""

    name = "postgres"
    port = "postgres"
    stop_signal = signal.SIGINT
    ready_timeout = 60.0

    def enabled(self, ctx: Context) -> bool:
        return self.name in ctx.private

    def data_dir(self, ctx: Context) -> Path:
        """``<run dir>/postgres/data``; where the unprivileged owner cannot reach the run directory (a folder
        above it without o+x, such as a private temp folder), a folder of this run directory's own under
        ``/var/tmp/flux-postgres``."""
        home = ctx.home(self.name)
        if os.geteuid() != 0 or all(p.stat().st_mode & stat.S_IXOTH for p in (home, *home.parents)):
            return home / "data"
        return self.outside_folder(ctx.run_dir) / "data"

    @staticmethod
    def outside_folder(run_dir: Path) -> Path:
        """The folder of ``run_dir``'s own under ``/var/tmp/flux-postgres`` (used only where it must be)."""
        return Path("/var/tmp/flux-postgres") / hashlib.sha1(str(run_dir).encode()).hexdigest()[:12]

    def prepare(self, ctx: Context) -> None:
        data = self.data_dir(ctx)
        if (data / "PG_VERSION").exists():
            if (ctx.run_dir / "airflow" / "metadata-database").exists():
                return
            shutil.rmtree(data)  # left by a deleted run directory of the same path: start anew
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0 and not str(data).startswith(str(ctx.run_dir)):
            data.parent.chmod(0o755)
        if os.geteuid() == 0:
            _as_owner(["true"])  # names the fix when the user is missing
            owner = pwd.getpwnam(POSTGRES_USER)
            shutil.chown(data, owner.pw_uid, owner.pw_gid)
            data.chmod(0o700)
        initdb = [postgres_bin("initdb"), "-D", str(data), "-U", POSTGRES_USER, "--auth=trust", "-E", "UTF8"]
        done = subprocess.run(_as_owner(initdb), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DevstackError(
                f"devstack service 'postgres': initdb failed in {data} (the user {POSTGRES_USER!r} must be able to "
                f"reach it: every folder above it needs o+x):\n{done.stdout}{done.stderr}"
            )

    def command(self, ctx: Context) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",  # TCP on loopback only
            "max_connections": "300",  # Airflow's components, task runners and the suite's own engines
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        options = [f"-c{key}={value}" for key, value in settings.items()]
        return _as_owner(
            [postgres_bin("postgres"), "-D", str(self.data_dir(ctx)), "-p", str(ctx.ports["postgres"]), *options]
        )

    def check(self, ctx: Context) -> str:
        import psycopg2

        psycopg2.connect(ctx.postgres_url, connect_timeout=3).close()
        return f"private server, {self.data_dir(ctx)}"


class PrivateRedis(Service):
    """A Redis server of the stack's own (the cluster shape's Celery broker), keeping nothing on disk."""

    name = "redis"
    port = "redis"

    def enabled(self, ctx: Context) -> bool:
        return self.name in ctx.private

    def command(self, ctx: Context) -> list[str]:
        server = shutil.which("redis-server")
        if not server:
            raise DevstackError(
                "devstack service 'redis' needs 'redis-server'. Fix: apt-get install redis-server (make does it as "
                "root), or set $FLUX_REDIS_URL"
            )
        port = str(ctx.ports["redis"])
        return [server, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def check(self, ctx: Context) -> str:
        if not redis_answers(ctx.redis_url):
            raise RuntimeError(f"no answer to PING at {ctx.redis_url}")
        return f"private server on port {urlsplit(ctx.redis_url).port}"
