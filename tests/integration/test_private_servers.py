"""The stack's private PostgreSQL and Redis, as a fresh machine without either gets them (forced here with
``FLUX_POSTGRES_URL=private`` / ``FLUX_REDIS_URL=private``, since this machine runs its own): started in the
run directory on free ports, serving real clients, and stopped by ``down`` with nothing left running."""

from __future__ import annotations

import psutil
import psycopg2
import pytest
import redis

from flux_devstack import cluster, databases
from flux_devstack.stack import Stack

MACHINE = databases.MACHINE_POSTGRES_URL


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
    stack.purge()
    assert not databases.PrivatePostgres.outside_folder(stack.run_dir).exists()


def test_clean_removes_the_private_servers_folder_outside_the_run_directory(tmp_path, monkeypatch):
    """pytest's temp folder is private (0700), so the private PostgreSQL keeps its data under /var/tmp: clean
    removes that folder with the run directory."""
    monkeypatch.setenv("FLUX_POSTGRES_URL", databases.PRIVATE)
    stack = Stack(run_dir=tmp_path / "run", services=[databases.PrivatePostgres()], echo=lambda line: None)
    data = databases.PrivatePostgres().data_dir(stack.up())
    assert data.exists()
    removed = stack.purge()
    assert not data.parent.exists() and not (tmp_path / "run").exists()
    assert not data.parent.parent.exists() or any(data.parent.parent.iterdir())  # its root goes once empty
    assert str(data.parent) in removed


def test_clean_drops_the_stacks_databases_and_redis_keys_on_the_machines_servers(tmp_path):
    if not (databases.postgres_answers(MACHINE) and databases.redis_answers(databases.MACHINE_REDIS_URL)):
        pytest.skip("the machine runs no PostgreSQL and Redis: a stack there uses private ones, which clean removes")
    stack = Stack(run_dir=tmp_path / "run", services=[], cluster=True, echo=lambda line: None)
    state = {"ports": {"airflow": 1}, "secrets": {}, "cluster": True, "private": []}
    stack._save_state({**state, "postgres_url": MACHINE, "redis_url": databases.MACHINE_REDIS_URL})
    ctx = stack.context()
    cluster.ensure_database(ctx, marker=tmp_path / "run" / "metadata-database")
    own = cluster.databases(ctx)
    admin = psycopg2.connect(MACHINE)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{own.database}_suite"')
    client = redis.Redis.from_url(own.broker_url)
    client.set(own.key_prefix + "queue", "1")
    client.set("flux-other:queue", "1")  # another user's key stays

    removed = stack.purge()

    with admin.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (own.database,))
        assert cur.fetchall() == []
    admin.close()
    assert client.keys(own.key_prefix + "*") == [] and client.get("flux-other:queue") == b"1"
    client.delete("flux-other:queue")
    client.close()
    assert f"database {own.database}" in removed and f"database {own.database}_suite" in removed
    assert not (tmp_path / "run").exists()
