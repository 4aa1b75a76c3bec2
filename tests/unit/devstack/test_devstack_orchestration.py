"""The stack's orchestration logic on small real processes (no Java, no Airflow): ordering,
failure reports with the service name and log tail, clean-up, PID safety, free ports."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest

from flux_devstack import ServiceFailed, Stack
from flux_devstack import ports as port_alloc
from flux_devstack.process import ProcessRecord, spawn, stop
from flux_devstack.service import Context, Service
from tests.support import REPO


class FileService(Service):
    """Healthy once it has written its ready file; records when it started."""

    def __init__(self, name, after=(), script="", ready_timeout=20.0):
        self.name, self.after, self.script, self.ready_timeout = name, tuple(after), script, ready_timeout

    def command(self, ctx: Context) -> list[str]:
        ready = ctx.home(self.name) / "ready"
        body = (
            self.script
            or f"import pathlib,time; pathlib.Path({str(ready)!r}).write_text(str(time.time())); time.sleep(600)"
        )
        return [sys.executable, "-c", body]

    def check(self, ctx: Context) -> str:
        ready = ctx.home(self.name) / "ready"
        if not ready.exists():
            raise RuntimeError("ready file not written yet")
        return "ready"


def _alive(record: dict) -> bool:
    return ProcessRecord.from_dict(record).alive()


def test_services_start_after_their_dependencies_and_stop(tmp_path):
    services = [FileService("b", after=["a"]), FileService("a"), FileService("c", after=["a", "b"])]
    stack = Stack(run_dir=tmp_path, dags_folder=tmp_path, services=services, echo=lambda _: None)
    stack.up()
    started = {s.name: float((tmp_path / s.name / "ready").read_text()) for s in services}
    assert started["a"] < started["b"] < started["c"]
    state = stack.load_state()
    assert all(_alive(r) for r in state["processes"].values())
    assert [row.state for row in stack.status()] == ["healthy"] * 3
    records = list(state["processes"].values())
    stack.down()
    assert not any(_alive(r) for r in records)


def test_a_service_that_dies_is_named_with_its_log_tail_and_the_rest_is_stopped(tmp_path):
    crash = "import sys; print('metastore exploded: port in use'); sys.exit(3)"
    services = [FileService("ok"), FileService("fragile", after=["ok"], script=crash)]
    stack = Stack(run_dir=tmp_path, dags_folder=tmp_path, services=services, echo=lambda _: None)
    with pytest.raises(ServiceFailed) as failure:
        stack.up()
    assert failure.value.service == "fragile"
    assert "exited during start-up" in str(failure.value)
    assert "metastore exploded: port in use" in str(failure.value)
    assert not _alive(stack.load_state()["processes"]["ok"])


def test_a_service_that_never_becomes_healthy_times_out_with_the_last_check(tmp_path):
    silent = "import time; print('still warming up'); time.sleep(600)"
    stack = Stack(
        run_dir=tmp_path,
        dags_folder=tmp_path,
        services=[FileService("slow", script=silent, ready_timeout=2)],
        echo=lambda _: None,
    )
    with pytest.raises(ServiceFailed) as failure:
        stack.up()
    message = str(failure.value)
    assert "'slow' did not become healthy within 2s" in message
    assert "ready file not written yet" in message and "still warming up" in message
    assert not _alive(stack.load_state()["processes"]["slow"])


def test_stop_kills_the_whole_tree_even_children_that_ignore_sigterm(tmp_path):
    script = "trap '' TERM; sleep 300 & sleep 300 & wait"
    record = spawn(["sh", "-c", script], log=tmp_path / "tree.log", env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    deadline = time.monotonic() + 5
    while len(psutil.Process(record.pid).children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = [record.pid] + [c.pid for c in psutil.Process(record.pid).children(recursive=True)]
    assert len(tree) == 3
    signalled = stop(record, grace=1)
    assert set(tree) <= set(signalled)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in tree)


def test_a_recycled_pid_is_never_killed(tmp_path):
    record = spawn(["sleep", "300"], log=tmp_path / "s.log", env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    impostor = ProcessRecord(pid=record.pid, create_time=record.create_time, log=record.log)
    impostor = dataclasses.replace(impostor, since_boot=record.since_boot - 100)
    older = ProcessRecord(pid=record.pid, create_time=record.create_time - 100, log=record.log)  # no since_boot
    assert not impostor.alive() and not older.alive()
    assert stop(impostor) == [] and stop(older) == []
    assert record.alive()
    stop(record)
    assert not record.alive()


def test_a_step_of_the_system_clock_leaves_live_services_alive(tmp_path, monkeypatch):
    """NTP moves the boot time psutil reads (the wall clock minus the uptime): every wall-clock start moves with
    it, so a stack that compared those took its own running services for dead ones, started them again on
    their ports and failed to bind."""
    record = spawn(["sleep", "300"], log=tmp_path / "s.log", env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    try:
        booted = psutil.boot_time()
        monkeypatch.setattr(psutil._psplatform, "boot_time", lambda: booted + 30)  # the clock stepped 30 s
        assert abs(psutil.Process(record.pid).create_time() - record.create_time - 30) < 0.5  # the start moved
        assert record.alive()
    finally:
        monkeypatch.undo()
        stop(record)
    assert not record.alive()


def test_port_blocks_skip_ports_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        taken = {busy_port}
        base = port_alloc.allocate_block((0, 1, 10000), taken=taken)
        assert {base, base + 1, base + 10000} <= taken
        assert all(port_alloc.is_free(p) for p in (base, base + 1, base + 10000))
        assert not port_alloc.is_free(busy_port)
        assert base + 10000 < port_alloc.EPHEMERAL


def test_down_without_a_stack_is_harmless(tmp_path):
    stack = Stack(run_dir=tmp_path / "never", dags_folder=tmp_path, services=[FileService("x")], echo=lambda _: None)
    assert stack.down() == []
    assert [row.state for row in stack.status()] == ["not started"]


def test_env_without_a_stack_says_how_to_start_one(tmp_path):
    stack = Stack(run_dir=tmp_path, dags_folder=tmp_path, services=[FileService("x")])
    with pytest.raises(Exception, match="python -m flux_devstack up"):
        stack.env()


def test_state_file_is_private(tmp_path):
    stack = Stack(run_dir=tmp_path, dags_folder=tmp_path, services=[FileService("x")], echo=lambda _: None)
    stack.up()
    try:
        assert (Path(stack.state_file).stat().st_mode & 0o077) == 0
    finally:
        stack.down()


def test_the_suite_runs_its_own_stack_never_the_users():
    """What tests create (data sets, pools, faults, runs) lives in .devstack-test: `make demo` and its
    dashboard, on .devstack, never see it, and the suite never stops a stack a user works with."""
    from tests.support import RUN_DIR

    assert RUN_DIR != (REPO / ".devstack").resolve() and RUN_DIR.name == ".devstack-test"
    makefile = (REPO / "Makefile").read_text()
    assert "--run-dir .devstack-test down" in makefile  # make down (and CI) stops both


def _pid(stack, name) -> int:
    return stack.load_state()["processes"][name]["pid"]


def test_up_restarts_only_dead_services_and_their_dependents_on_the_same_ports(tmp_path):
    import signal

    services = [FileService("a"), FileService("b", after=["a"]), FileService("c")]
    messages = []
    stack = Stack(run_dir=tmp_path, dags_folder=tmp_path, services=services, echo=messages.append)
    stack.up()
    ports, pids = stack.load_state()["ports"], {s.name: _pid(stack, s.name) for s in services}
    os.kill(pids["b"], signal.SIGKILL)
    psutil.Process(pids["b"]).wait(5)
    stack.up()
    after = {s.name: _pid(stack, s.name) for s in services}
    assert after["a"] == pids["a"] and after["c"] == pids["c"] and after["b"] != pids["b"]
    assert stack.load_state()["ports"] == ports and "restarting b on the same ports; keeping a, c" in messages
    os.kill(after["a"], signal.SIGKILL)  # a dependency dies: what starts after it restarts too
    psutil.Process(after["a"]).wait(5)
    stack.up()
    again = {s.name: _pid(stack, s.name) for s in services}
    assert again["c"] == pids["c"] and again["a"] != after["a"] and again["b"] != after["b"]
    assert [row.state for row in stack.status()] == ["healthy"] * 3
    stack.down()


def _orphan_of_a_killed_leader(tmp_path, child_env: str) -> tuple[Stack, int]:
    """A service whose child (``sleep``, started with ``child_env``) is left running after the service is
    killed with SIGKILL: the stack and the orphan's PID."""
    import signal

    ready = tmp_path / "leader" / "ready"
    script = (
        f"import pathlib, subprocess, time; child = subprocess.Popen(['/bin/sleep', '300'], env={child_env}, "
        f"start_new_session=True); pathlib.Path({str(tmp_path / 'child.pid')!r}).write_text(str(child.pid)); "
        f"pathlib.Path({str(ready)!r}).write_text('1'); time.sleep(600)"
    )
    stack = Stack(
        run_dir=tmp_path, dags_folder=tmp_path, services=[FileService("leader", script=script)], echo=lambda _: None
    )
    stack.up()
    child = int((tmp_path / "child.pid").read_text())
    os.kill(_pid(stack, "leader"), signal.SIGKILL)
    psutil.Process(_pid(stack, "leader")).wait(5)
    assert psutil.pid_exists(child)
    return stack, child


def test_down_stops_the_orphans_of_a_service_killed_with_sigkill(tmp_path):
    """A scheduler killed with SIGKILL leaves its executor's workers running, re-parented to init."""
    stack, child = _orphan_of_a_killed_leader(tmp_path, "None")
    assert child in stack.down()
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_down_stops_an_orphan_that_shows_no_owner_mark_by_its_service_folder(tmp_path):
    """Airflow's processes set their title, which overwrites the environment they show: the owner mark is
    gone, and an orphan is found by the service folder it works in."""
    stack, child = _orphan_of_a_killed_leader(tmp_path, "{}")
    assert "FLUX_DEVSTACK_OWNER" not in psutil.Process(child).environ()
    assert child in stack.down()
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_a_plain_up_keeps_the_bundles_the_stack_was_started_with(tmp_path):
    messages = []
    first = Stack(
        run_dir=tmp_path,
        dags_folder=tmp_path,
        services=[FileService("x")],
        echo=messages.append,
        dag_bundles={"extra": tmp_path},
    )
    first.up()
    Stack(run_dir=tmp_path, dags_folder=tmp_path, services=[FileService("x")], echo=messages.append).up()
    assert messages[-1].startswith("reusing the healthy local stack")
    assert first.load_state()["dag_bundles"] == {"extra": str(tmp_path.resolve())}
    first.down()


def test_a_changed_mssql_seed_restarts_the_stand_in_to_load_it(tmp_path, monkeypatch):
    messages = []
    services = [FileService("mssql"), FileService("other")]
    stack = Stack(run_dir=tmp_path, dags_folder=tmp_path, services=services, echo=messages.append)
    monkeypatch.delenv("FLUX_MSSQL_SEED", raising=False)
    stack.up()
    before = {s.name: _pid(stack, s.name) for s in services}
    monkeypatch.setenv("FLUX_MSSQL_SEED", str(tmp_path / "more.sql"))
    stack.up()
    assert any("FLUX_MSSQL_SEED changed" in m and "restarting the SQL Server stand-in" in m for m in messages)
    assert _pid(stack, "mssql") != before["mssql"] and _pid(stack, "other") == before["other"]
    stack.up()
    assert messages[-1].startswith("reusing")  # loaded once, not at every up
    stack.down()


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root (unshare), as on CI")
def test_a_host_network_reaches_the_machine_only_through_its_pipe(tmp_path):
    """devstack.netpipe: inside a network namespace of its own (only a loopback), a client reaches a server on
    the machine's 127.0.0.1 through the pipe's two halves, bytes exact both ways (a request half-closed before
    its answer too); a port the pipe does not carry is not there."""
    import subprocess
    import threading

    with socket.socket() as server, socket.socket() as other:
        server.bind(("127.0.0.1", 0))
        server.listen()
        other.bind(("127.0.0.1", 0))
        other.listen()
        port, elsewhere = server.getsockname()[1], other.getsockname()[1]

        def answer():  # reads each whole request (to its half-close), answers it reversed
            while True:
                conn, _ = server.accept()
                with conn:
                    request = b""
                    while chunk := conn.recv(65536):
                        request += chunk
                    conn.sendall(request[::-1])

        threading.Thread(target=answer, daemon=True).start()
        folder = tmp_path / "net"
        gateway = subprocess.Popen(
            [sys.executable, "-m", "flux_devstack.netpipe", "gateway", str(folder), str(port)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert gateway.stdout.readline().startswith("netpipe gateway: 1 ports")
            client = (
                "import socket, sys\n"
                "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\n"
                "s.sendall(bytes(range(256)) * 1000); s.shutdown(socket.SHUT_WR)\n"
                "got = b''\n"
                "while chunk := s.recv(65536): got += chunk\n"
                "assert got == (bytes(range(256)) * 1000)[::-1], len(got)\n"
                "try:\n    socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=3)\n"
                "except ConnectionRefusedError:\n    print('exact; elsewhere refused')\n"
            )
            inside = (
                "ip link set lo up || exit 1\n"
                f'{sys.executable} -m flux_devstack.netpipe loopback "$0" "$1" >/dev/null &\n'
                "for _ in $(seq 200); do (: >/dev/tcp/127.0.0.1/$1) 2>/dev/null && break; sleep 0.05; done\n"
                'exec "$2" -c "$3" "$1" "$4"'
            )
            done = subprocess.run(
                [
                    "unshare",  # a PID namespace too: the pipe's half inside dies with bash, whatever happens
                    "--net",
                    "--pid",
                    "--fork",
                    "bash",
                    "-c",
                    inside,
                    str(folder),
                    str(port),
                    sys.executable,
                    client,
                    str(elsewhere),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            gateway.kill()
            gateway.wait()
    assert done.stdout.strip() == "exact; elsewhere refused", done.stderr[-2000:]


def test_a_host_network_folder_fits_a_unix_socket_path(tmp_path):
    from flux_devstack import cluster

    for run_dir in (tmp_path, tmp_path / ("deep" * 30)):
        ctx = Context(run_dir=run_dir, ports={}, secrets={}, dags_folder=tmp_path)
        assert len(str(cluster.network_dir(ctx, "flux-worker-1") / "65535.sock")) < 108


def test_each_host_has_an_address_of_its_own_in_a_link_local_net_of_its_run_directory(tmp_path):
    import ipaddress

    from flux_devstack import cluster

    def addresses(run_dir):
        ctx = Context(run_dir=run_dir, ports={}, secrets={}, dags_folder=tmp_path)
        return [cluster.address(ctx, host) for host in cluster.WORKER_HOSTS]

    mine = addresses(tmp_path / "a")
    links = {ipaddress.ip_interface(f"{a.host}/30").network for a in mine}
    assert len(links) == len(mine) and all(ipaddress.ip_interface(f"{a.machine}/30").network in links for a in mine)
    assert all(ipaddress.ip_address(a.host).is_link_local and len(a.link) <= 15 for a in mine)  # IFNAMSIZ
    assert {a.link for a in mine}.isdisjoint(a.link for a in addresses(tmp_path / "b"))  # two stacks, two links


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace needs root (unshare), as on CI")
def test_the_api_servers_namespace_resolves_the_host_names_and_the_machine_does_not_change(tmp_path):
    import subprocess

    from flux_devstack import cluster

    ctx = Context(run_dir=tmp_path, ports={}, secrets={}, dags_folder=tmp_path)
    machine = Path("/etc/hosts").read_text()
    inside = subprocess.run(
        cluster.resolving_hosts(ctx, ["getent", "hosts", *cluster.WORKER_HOSTS]), capture_output=True, text=True
    )
    assert inside.returncode == 0, inside.stderr
    resolved = dict(reversed(line.split()) for line in inside.stdout.splitlines())
    assert resolved == {host: cluster.address(ctx, host).host for host in cluster.WORKER_HOSTS}
    assert Path("/etc/hosts").read_text() == machine
