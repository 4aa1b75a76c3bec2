"""The stack's private PostgreSQL and Redis, as a fresh machine without either gets them (forced here with
``FLUX_POSTGRES_URL=private`` / ``FLUX_REDIS_URL=private``, since this machine runs its own): started in the
run directory on free ports, serving real clients, and stopped by ``down`` with nothing left running."""

from __future__ import annotations

import psutil
import psycopg2
import redis

from flux_devstack import databases
from flux_devstack.stack import Stack


def test_private_servers_start_serve_and_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("FLUX_POSTGRES_URL", databases.PRIVATE)
    monkeypatch.setenv("FLUX_REDIS_URL", databases.PRIVATE)
    stack = Stack(
        run_dir=tmp_path / "run",
        services=[databases.PrivatePostgres(), databases.PrivateRedis()],
        cluster=True,
        echo=lambda line: None,
    )
    ctx = stack.up()
    try:
        assert set(ctx.private) == {"postgres", "redis"}
        assert ctx.postgres_url.endswith(f":{ctx.ports['postgres']}/postgres")
        with psycopg2.connect(ctx.postgres_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_setting('data_directory'), current_user")
            data_dir, user = cur.fetchone()
        # pytest's temp folder is private (0700): the data lives where the unprivileged owner reaches it
        assert data_dir == str(databases.PrivatePostgres().data_dir(ctx)) and user == "postgres"
        client = redis.Redis.from_url(ctx.redis_url)
        client.set("flux-test", "1")
        assert client.get("flux-test") == b"1"
        client.close()
        pids = {s.name: s.pid for s in stack.status()}
        assert all(psutil.pid_exists(pid) for pid in pids.values())
    finally:
        stopped = stack.down()
    assert set(pids.values()) <= set(stopped)
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids.values()
    )
    assert "database system is shut down" in (tmp_path / "run" / "logs" / "postgres.log").read_text()
