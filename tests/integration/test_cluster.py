"""The cluster-shaped stack (``devstack up --cluster``): Airflow on PostgreSQL, CeleryExecutor on Redis, two
schedulers, a triggerer and two Celery workers standing for two hosts, beside the real S3, Hive and SQL
Server stand-in. Run alone with ``make test PYTEST_ARGS='-m cluster'``.

The module brings its own stack up in ``.devstack-cluster-test`` (its own PostgreSQL database and Redis
index) and stops it at the end, so the rest of the suite does not share the two cores with it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, select, text

from flux_devstack.stack import UP
from flux_provider.run_report import stage_rows
from flux_provider.throttle import store
from tests.support import REPO
from tests.support.stack import wait_until
from tests.support.throttle import PERIOD, concurrency_ok

pytestmark = [pytest.mark.cluster, pytest.mark.stack]

RUN_DIR = REPO / ".devstack-cluster-test"
HOSTS = {"flux-worker-1", "flux-worker-2"}
DEMO_DAGS = "('flux_titles', 'flux_subscribers', 'flux_ad_impressions', 'flux_viewing_sessions')"  # the sample bundle


@pytest.fixture(scope="module")
def cluster():
    from flux_devstack import Stack

    stack = Stack(
        run_dir=RUN_DIR,
        dags_folder=REPO / "dags",
        dag_bundles={"flux-cluster-tests": REPO / "tests" / "cluster_dags"},
        cluster=True,
    )
    stack.up()
    yield stack
    stack.down()


@pytest.fixture(scope="module")
def db(cluster):
    return create_engine(cluster.env()["FLUX_AIRFLOW_DB"])


@pytest.fixture(scope="module")
def demo(cluster):
    """The sample bundle through the cluster's schedulers and workers (``devstack demo``), once."""
    result = subprocess.run(
        [sys.executable, "-m", "flux_devstack", "--run-dir", str(RUN_DIR), "demo", "--rows", "8000"],
        capture_output=True,
        text=True,
        timeout=900,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def scheduler_pids(cluster) -> dict[int, str]:
    processes = cluster.load_state()["processes"]
    return {processes[name]["pid"]: name for name in ("airflow-scheduler", "airflow-scheduler-2")}


def lease_holder(db) -> tuple[int, dt.datetime] | None:
    with db.connect() as conn:
        row = conn.execute(select(store.lease).where(store.lease.c.name == "throttle-controller")).first()
    return (int(row.holder.rsplit(":", 1)[1]), row.expires_at) if row else None


def test_the_cluster_runs_airflow_on_postgres_with_celery_two_schedulers_a_triggerer_and_two_workers(cluster, db):
    names = {s.name: s.state for s in cluster.status()}
    for service in ("airflow-scheduler", "airflow-scheduler-2", "airflow-triggerer", "airflow-worker-1"):
        assert names[service] == "healthy", names
    assert names["airflow-worker-2"] == "healthy"
    with db.connect() as conn:
        assert conn.execute(text("SELECT version()")).scalar().startswith("PostgreSQL")
        # the provider's own tables, made by its numbered migrations on PostgreSQL
        assert conn.execute(text("SELECT version FROM flux_schema")).scalar() >= 2
        jobs = conn.execute(text("SELECT job_type, count(*) FROM job WHERE state = 'running' GROUP BY job_type")).all()
    assert dict(jobs).get("SchedulerJob") == 2 and dict(jobs).get("TriggererJob") == 1


def worker_pid(cluster, host: str) -> int:
    """The PID of the Celery worker standing for ``host`` (``flux-worker-<n>``)."""
    return cluster.load_state()["processes"][f"airflow-worker-{host.rsplit('-', 1)[1]}"]["pid"]


def in_host(cluster, host: str, *command: str) -> subprocess.CompletedProcess:
    """``command`` in worker host ``host``'s network and UTS namespaces (``nsenter``)."""
    pid = worker_pid(cluster, host)
    return subprocess.run(
        ["nsenter", "-t", str(pid), "--net", "--uts", *command], capture_output=True, text=True, timeout=30
    )


OWN_HOSTS = pytest.mark.skipif(os.geteuid() != 0, reason="a host's own namespaces need root (unshare), as on CI")


@OWN_HOSTS
def test_each_worker_is_a_host_with_its_own_name_and_network(cluster):
    """A worker host has its own host name and a network of its own: it reaches the stack's services (S3,
    Airflow's API server, PostgreSQL) through its pipe, and no other port of the machine (one this test
    opens is not there); it has an address of its own, where the machine reaches its log server (and the
    machine's loopback does not); its processes live in namespaces other than the machine's."""
    import socket
    from urllib.parse import urlsplit

    from flux_devstack import cluster as shape

    ctx = cluster.context()
    postgres = urlsplit(os.environ.get("FLUX_POSTGRES_URL", "postgresql://127.0.0.1:5432")).port or 5432
    probe = "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=3)"
    logs = ctx.ports["airflow_worker_log"]  # the port the API server asks every host's log server on
    with socket.socket() as here:
        here.bind(("127.0.0.1", 0))
        here.listen()
        elsewhere = here.getsockname()[1]
        for host in sorted(HOSTS):
            assert in_host(cluster, host, "hostname").stdout.strip() == host
            for port in (ctx.ports["s3"], ctx.ports["airflow_api"], postgres):
                reached = in_host(cluster, host, sys.executable, "-c", probe, str(port))
                assert reached.returncode == 0, (host, port, reached.stderr[-500:])
            refused = in_host(cluster, host, sys.executable, "-c", probe, str(elsewhere))
            assert refused.returncode != 0 and "ConnectionRefusedError" in refused.stderr
            assert os.stat(f"/proc/{worker_pid(cluster, host)}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
            own = shape.address(ctx, host).host
            assert f"inet {own}/30" in in_host(cluster, host, "ip", "-4", "-o", "addr", "show", "eth0").stdout
            socket.create_connection((own, logs), timeout=5).close()  # its log server, at its own address
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", logs), timeout=5)  # no host serves on the machine's loopback
    assert len({shape.address(ctx, h).host for h in HOSTS}) == len(HOSTS)


def test_the_sample_bundle_runs_and_reconciles_with_tasks_on_both_workers(demo, db):
    assert "every data set ran and reconciled" in demo
    with db.connect() as conn:
        # this demo's runs: the latest of each data set (a reused cluster database keeps an earlier demo's)
        latest = conn.execute(
            text(
                "SELECT DISTINCT ON (dag_id) dag_id, run_id FROM dag_run "
                f"WHERE dag_id IN {DEMO_DAGS} ORDER BY dag_id, start_date DESC"
            )
        ).all()
        rows = [
            r
            for r in conn.execute(
                text(
                    "SELECT dag_id, run_id, task_id, map_index, state, hostname, queued_dttm, end_date "
                    f"FROM task_instance WHERE dag_id IN {DEMO_DAGS}"
                )
            ).all()
            if (r.dag_id, r.run_id) in {tuple(x) for x in latest}
        ]
    assert {r.state for r in rows} == {"success"}, [r for r in rows if r.state != "success"]
    assert {r.hostname for r in rows} == HOSTS  # both workers ran tasks, each under the host it stands for
    # the split fact's parts, spread over both workers, never held more tasks than its pool's slots
    parts = [
        {"queued_when": r.queued_dttm.isoformat(), "end_date": r.end_date.isoformat()}
        for r in rows
        if r.dag_id == "flux_viewing_sessions" and r.task_id == "export_upload"
    ]
    assert len(parts) >= 8
    with db.connect() as conn:
        history = [
            dict(e)
            for e in conn.execute(
                select(store.events).where(store.events.c.dataset == "viewing_sessions").order_by(store.events.c.id)
            ).mappings()
        ]
    concurrency_ok(parts, history, 4)


@OWN_HOSTS
def test_the_ui_reads_a_tasks_log_from_the_log_server_of_the_host_that_ran_it(cluster, demo, db):
    """Task logs stay on the disk of the host that wrote them (no shared log folder, no remote logging): the
    API server, as the UI asks it, fetches each from that host's log server, by the host name Airflow
    recorded and the host's own address."""
    port = cluster.context().ports["airflow_worker_log"]
    with db.connect() as conn:
        tasks = conn.execute(
            text(
                "SELECT DISTINCT ON (hostname) hostname, dag_id, run_id, task_id, map_index, try_number "
                f"FROM task_instance WHERE dag_id IN {DEMO_DAGS} AND state = 'success' ORDER BY hostname, task_id"
            )
        ).all()
    assert {t.hostname for t in tasks} == HOSTS, tasks
    client = client_of(cluster)
    for task in tasks:
        path = f"dag_id={task.dag_id}/run_id={task.run_id}/task_id={task.task_id}"
        logs = cluster.run_dir / "hosts" / task.hostname / "logs"
        assert list(logs.glob(f"{path}/**/attempt={task.try_number}.log")), f"not on {task.hostname}'s disk"
        assert not list((cluster.run_dir / "airflow" / "logs").glob(f"{path}/**/*.log"))  # nor on the machine's
        response = client.request(
            "GET",
            f"/dags/{task.dag_id}/dagRuns/{task.run_id}/taskInstances/{task.task_id}/logs/{task.try_number}",
            params={"full_content": "true", "map_index": task.map_index},
            headers={"Accept": "application/json"},
        )
        response.raise_for_status()
        events = [e.get("event", "") if isinstance(e, dict) else str(e) for e in response.json()["content"]]
        assert any(e.startswith(f"http://{task.hostname}:{port}/log/") for e in events), events[:10]
        assert "::group::Post Execute" in events, events[:40]  # the task's own log, to its successful end


def client_of(cluster):
    from flux_devstack.airflow_api import AirflowClient

    env = cluster.env()
    return AirflowClient(env["FLUX_AIRFLOW_URL"], env["FLUX_AIRFLOW_USER"], env["FLUX_AIRFLOW_PASSWORD"])


def kill_host(pid: int) -> int:
    """SIGKILL every process of a worker's session (the worker, its task processes, their freebcp): as if
    its host died. Returns how many were killed."""
    import psutil

    from flux_devstack.process import session_tree

    victims = session_tree(psutil.Process(pid))
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return len(victims)


def running_parts_on(db, run_id: str, host: str) -> int:
    """How many parts of the fact's run are running on ``host``."""
    with db.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM task_instance WHERE dag_id = 'flux_viewing_sessions' AND run_id = :r "
                "AND task_id = 'export_upload' AND state = 'running' AND hostname = :h"
            ),
            {"r": run_id, "h": host},
        ).scalar()


def parts_and_lost(db, run_id: str, host: str) -> tuple[list, list]:
    """The fact's run's parts as they ended (map index, try, host), and its earlier tries that ran on ``host``."""
    with db.connect() as conn:
        parts = conn.execute(
            text(
                "SELECT map_index, try_number, hostname FROM task_instance WHERE dag_id = 'flux_viewing_sessions' "
                "AND run_id = :r AND task_id = 'export_upload'"
            ),
            {"r": run_id},
        ).all()
        lost = conn.execute(
            text(
                "SELECT map_index, hostname FROM task_instance_history WHERE dag_id = 'flux_viewing_sessions' "
                "AND run_id = :r AND task_id = 'export_upload' AND hostname = :h"
            ),
            {"r": run_id, "h": host},
        ).all()
    return parts, lost


def test_a_worker_killed_mid_export_is_retried_on_the_other_and_the_load_is_exact(cluster, db, demo):
    """A worker host dies (every process of it SIGKILLed) while parts of the split fact export: Airflow gives
    the lost tries up (heartbeat timeout, 30 s on this stack) and retries them on the other worker; the run
    publishes every row once, and no multipart upload is left open."""
    import sqlite3
    from pathlib import Path

    env = cluster.env()
    client = client_of(cluster)
    source = Path(env["FLUX_MSSQL_DB"])
    with sqlite3.connect(source) as conn:  # each export query of the fact takes 6 s: long enough to be cut
        conn.execute("DELETE FROM flux_faults")
        conn.execute("INSERT INTO flux_faults VALUES ('viewing_sessions', NULL, -1, 6, 0)")
        expected = conn.execute("SELECT COUNT(*) FROM viewing_sessions").fetchone()[0]
    victim = cluster.load_state()["processes"]["airflow-worker-1"]["pid"]
    try:
        run_id = client.trigger("flux_viewing_sessions")
        wait_until(lambda: running_parts_on(db, run_id, "flux-worker-1"), 180, "a part ran on flux-worker-1", 0.5)
        time.sleep(2)  # in the middle of its query
        assert kill_host(victim) >= 2
        result = client.wait_for_run("flux_viewing_sessions", run_id, timeout=600)
    finally:
        with sqlite3.connect(source) as conn:
            conn.execute("DELETE FROM flux_faults")
    assert result.state == "success"
    parts, lost = parts_and_lost(db, run_id, "flux-worker-1")
    assert lost, "no try of a part was lost with flux-worker-1"
    for map_index, _ in lost:  # each lost part ran again, on the host that was still alive
        retried = next(p for p in parts if p.map_index == map_index)
        assert retried.try_number >= 2 and retried.hostname == "flux-worker-2"
    rows = stage_rows(lambda task_id: client.xcom("flux_viewing_sessions", run_id, task_id))
    assert rows["exported"] == rows["uploaded"] == rows["staged"] == expected and rows["reconciled"]
    assert sum(p["rows"] for p in rows["parts"]) == expected
    open_uploads = boto_client(env).list_multipart_uploads(Bucket="flux").get("Uploads", [])
    assert [u["Key"] for u in open_uploads if "viewing_sessions" in u["Key"]] == []
    cluster.up()  # the stack restarts the dead worker
    assert all(s.state in UP for s in cluster.status())


def task_processes(ti_id: str) -> list:
    """The processes of one running try: Airflow's supervisor (in a Celery pool process), the task process it
    forked (titled ``airflow worker -- <task instance id>``) and the task's children (freebcp)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        if " ".join(proc.info["cmdline"] or []).strip() == f"airflow worker -- {ti_id}":
            return [proc.parent(), proc, *proc.children(recursive=True)]
    return []


def test_a_try_cut_off_mid_export_never_publishes_over_its_successor(cluster, db, demo):
    """A try is cut off (its processes stopped: no heartbeat) while it streams; Airflow gives it up and runs
    the task again; once the retry has published, the old try is let go on. The pointer stays the retry's,
    and the run loads every row."""
    import sqlite3
    from pathlib import Path

    env = cluster.env()
    client = client_of(cluster)
    source = Path(env["FLUX_MSSQL_DB"])
    with sqlite3.connect(source) as conn:  # every batch on the table waits 6 s: the try is cut off mid-export
        conn.execute("DELETE FROM flux_faults")
        conn.execute("INSERT INTO flux_faults VALUES ('catalog_titles', NULL, -1, 6, 0)")
        expected = conn.execute("SELECT COUNT(*) FROM catalog_titles").fetchone()[0]
    stopped = []
    try:
        run_id = client.trigger("flux_titles")
        query = text(
            "SELECT id, try_number, state, hostname FROM task_instance WHERE dag_id = 'flux_titles' "
            "AND run_id = :r AND task_id = 'export_upload'"
        )
        deadline = time.monotonic() + 180
        while not stopped:
            with db.connect() as conn:
                ti = conn.execute(query, {"r": run_id}).first()
            if ti and ti.state == "running":
                time.sleep(3)  # inside its export
                stopped = [p for p in task_processes(str(ti.id)) if p is not None]
            assert time.monotonic() < deadline, "the export never ran"
            time.sleep(0.5)
        for proc in stopped:
            proc.send_signal(signal.SIGSTOP)
        cut = ti
        result = client.wait_for_run("flux_titles", run_id, timeout=600)
        assert result.state == "success"
        with db.connect() as conn:
            final = conn.execute(query, {"r": run_id}).first()
        assert final.try_number > cut.try_number  # Airflow gave the cut-off try up and ran it again
    finally:
        for proc in stopped:
            with contextlib.suppress(Exception):
                proc.send_signal(signal.SIGCONT)
        with sqlite3.connect(source) as conn:
            conn.execute("DELETE FROM flux_faults")
    # the old try goes on until its supervisor learns it was given up, or its publish is refused: it ends
    import psutil

    _, alive = psutil.wait_procs(stopped[1:], timeout=120)  # the task process and its freebcp
    assert not alive, f"the cut-off try still runs: {alive}"
    s3 = boto_client(env)
    pointer = json.loads(s3.get_object(Bucket="flux", Key="media/titles/_published.json")["Body"].read())
    assert pointer["try"] == final.try_number and pointer["rows"] == expected
    rows = stage_rows(lambda task_id: client.xcom("flux_titles", run_id, task_id))
    assert rows["exported"] == rows["uploaded"] == rows["staged"] == expected and rows["reconciled"]


def boto_client(env: dict):
    import boto3

    conn = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    return boto3.client(
        "s3",
        endpoint_url=conn["extra"]["endpoint_url"],
        region_name=conn["extra"]["region_name"],
        aws_access_key_id=conn["login"],
        aws_secret_access_key=conn["password"],
    )


def test_one_controller_acts_and_the_other_scheduler_takes_over_a_kill_9_within_3_periods(cluster, db, demo):
    env = cluster.env()
    client = client_of(cluster)
    throttle = [sys.executable, "-m", "flux_provider.throttle"]
    cli_env = {**os.environ, "AIRFLOW_HOME": env["AIRFLOW_HOME"]}
    subprocess.run([*throttle, "pin", "titles", "1", "--reason", "failover test"], env=cli_env, check=True)

    schedulers = scheduler_pids(cluster)
    holder = lease_holder(db)
    assert holder is not None and holder[0] in schedulers, (holder, schedulers)  # exactly one acts: a scheduler
    acting = holder[0]
    other = next(pid for pid in schedulers if pid != acting)
    renewed = time.monotonic() + PERIOD * 3
    while lease_holder(db)[1] == holder[1]:  # a period later the holder renews its lease
        assert time.monotonic() < renewed, lease_holder(db)
        time.sleep(0.5)
    assert lease_holder(db)[0] == acting  # the other scheduler runs a controller too, and does not act

    # the acting scheduler's host dies: SIGKILL to its processes, as a container's or a systemd unit's end sends
    # (a child left alive, such as its health-check server, would hold its DB connection and the locks in it)
    os.killpg(acting, signal.SIGKILL)
    killed = time.monotonic()
    while lease_holder(db)[0] != other:
        assert time.monotonic() - killed < 3 * PERIOD + 2, "the lease was not taken over within 3 periods"
        time.sleep(0.5)
    took = time.monotonic() - killed

    # the new controller enforces the pin a person set before the failover: an outside edit is put back
    pool = client.request("GET", "/pools/flux_titles").json()
    client.request(
        "PATCH",
        "/pools/flux_titles",
        json={"name": "flux_titles", "slots": 5, "include_deferred": pool["include_deferred"]},
    )
    deadline = time.monotonic() + 3 * PERIOD
    while client.request("GET", "/pools/flux_titles").json()["slots"] != 1:
        assert time.monotonic() < deadline, "the pin did not survive the failover"
        time.sleep(1)
    subprocess.run([*throttle, "unpin", "titles", "--reason", "failover test"], env=cli_env, check=True)
    print(f"lease taken over {took:.1f}s after SIGKILL (period {PERIOD}s)")
    cluster.up()  # the stack restarts the killed scheduler
    assert all(s.state in UP for s in cluster.status())


def test_the_sample_source_loads_into_sql_server_through_pymssql(cluster, demo, monkeypatch):
    """docker-compose.yaml's source-loader: the generated sample rows through a SQL Server connection (here the
    cluster stack's stand-in; SQL Server 2022 itself cannot run here), read back exactly."""
    import decimal

    from flux_devstack.sample_data import load_into_sql_server, sample_rows

    env = cluster.env()
    monkeypatch.setenv("AIRFLOW_CONN_MSSQL_DEFAULT", env["AIRFLOW_CONN_MSSQL_DEFAULT"])
    counts = load_into_sql_server("mssql_default", 300)
    expected = sample_rows(300)
    assert counts == {name: len(rows) for name, rows in expected.items()}

    def plain(value):
        if isinstance(value, dt.datetime):
            return value.isoformat(" ", "milliseconds")
        if isinstance(value, dt.date):
            return value.isoformat()
        return str(value) if isinstance(value, decimal.Decimal) else value

    from airflow.providers.microsoft.mssql.hooks.mssql import MsSqlHook

    conn = MsSqlHook(mssql_conn_id="mssql_default").get_conn()
    try:
        cursor = conn.cursor()
        for name, rows in expected.items():
            cursor.execute(f"SELECT * FROM dbo.{name} ORDER BY 1")
            assert [tuple(plain(v) for v in row) for row in cursor.fetchall()] == rows, name
    finally:
        conn.close()


def test_a_file_handed_to_another_host_fails_at_once_and_one_host_queue_works(cluster, db, demo):
    """Each worker host has its own staging disk. A file-mode export on flux-worker-1 handed to an upload on
    flux-worker-2 fails at once (a configuration error: no retry) naming both hosts, and publishes nothing;
    the same hand-off through one host's queue (a spec's ``<export mode="file" queue=...>``) loads exactly."""
    from flux_devstack import cluster as cluster_layout
    from flux_provider.errors import ERROR_XCOM, ErrorRecord
    from flux_provider.handoffs import ExportResult

    env = cluster.env()
    client = client_of(cluster)
    s3 = boto_client(env)
    for leftover in s3.list_objects_v2(Bucket="flux", Prefix="tests/handoff_across/").get("Contents", []):
        s3.delete_object(Bucket="flux", Key=leftover["Key"])  # of an earlier run of this test
    across = client.run_dag("flux_test_handoff_across_hosts", timeout=300)
    assert across.state == "failed" and across.task_states == {"export": "success", "upload": "failed"}
    with db.connect() as conn:
        tis = {
            r.task_id: r
            for r in conn.execute(
                text("SELECT task_id, try_number, hostname FROM task_instance WHERE dag_id = :d AND run_id = :r"),
                {"d": across.dag_id, "r": across.run_id},
            )
        }
    assert tis["export"].hostname == "flux-worker-1" and tis["upload"].hostname == "flux-worker-2"
    assert tis["upload"].try_number == 1  # the DAG allows 2 retries: a configuration error uses none
    export = ExportResult.from_json(client.xcom(across.dag_id, across.run_id, "export"))
    assert export.host == "flux-worker-1"
    # both hosts stage under one path, each on its own disk: the file is only on flux-worker-1's
    ctx = cluster.context()
    relative = os.path.relpath(export.path, cluster_layout.staging_dir(ctx))
    assert not relative.startswith("..")
    kept = cluster_layout.staging_dir(ctx, "flux-worker-1") / relative
    assert kept.stat().st_size == export.bytes  # kept for a re-run on the right host
    assert not (cluster_layout.staging_dir(ctx, "flux-worker-2") / relative).exists()
    error = ErrorRecord.from_json(client.xcom(across.dag_id, across.run_id, "upload", key=ERROR_XCOM))
    assert error.error_class == "config" and error.step == "upload"
    assert "written on host 'flux-worker-1' but this task runs on 'flux-worker-2'" in error.message
    assert s3.list_objects_v2(Bucket="flux", Prefix="tests/handoff_across/").get("KeyCount", 0) == 0

    one = client.run_dag("flux_handoff_one_host", timeout=300)
    assert one.state == "success", one.task_states
    with db.connect() as conn:
        hosts = dict(
            conn.execute(
                text("SELECT task_id, hostname FROM task_instance WHERE dag_id = :d AND run_id = :r"),
                {"d": one.dag_id, "r": one.run_id},
            ).all()
        )
    assert hosts["export"] == hosts["upload"] == "flux-worker-2", hosts
    rows = stage_rows(lambda task_id: client.xcom(one.dag_id, one.run_id, task_id))
    assert rows["exported"] == rows["uploaded"] == rows["staged"] == rows["target"] > 0 and rows["reconciled"]
