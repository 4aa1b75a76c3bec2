"""The stack's orchestration logic on small real processes (no Java, no Airflow): ordering,
failure reports with the service name and log tail, clean-up, PID safety, free ports."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from flux_devstack import ServiceFailed, Stack
from flux_devstack import ports as port_alloc
from flux_devstack.process import ProcessRecord, spawn, stop
from flux_devstack.service import Context, DevstackError, Service
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


def test_down_stops_dependents_together_and_then_what_they_depend_on(tmp_path):
    """Each service notes when SIGTERM reached it and takes a second to stop: b and c (both after a) are
    signalled in one wave, and a only once both have exited."""

    def slow_to_stop(name: str) -> str:
        note, ready = tmp_path / f"{name}.term", tmp_path / name / "ready"
        return (
            "import pathlib, signal, sys, time\n"
            f"def term(*_):\n    pathlib.Path({str(note)!r}).write_text(str(time.time())); time.sleep(1); sys.exit(0)\n"
            f"signal.signal(signal.SIGTERM, term); pathlib.Path({str(ready)!r}).write_text('1'); time.sleep(600)"
        )

    services = [
        FileService("a", script=slow_to_stop("a")),
        FileService("b", after=["a"], script=slow_to_stop("b")),
        FileService("c", after=["a"], script=slow_to_stop("c")),
    ]
    stack = Stack(run_dir=tmp_path, dags_folder=tmp_path, services=services, echo=lambda _: None)
    stack.up()
    stack.down()
    term = {name: float((tmp_path / f"{name}.term").read_text()) for name in "abc"}
    assert abs(term["b"] - term["c"]) < 0.9  # together: neither waited for the other's second
    assert term["a"] >= max(term["b"], term["c"]) + 1  # after both had stopped


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


def test_two_stacks_starting_at_once_never_pick_the_same_port(tmp_path, monkeypatch):
    """Ports are picked free but bound seconds later: a second stack picking meanwhile (here with the very same
    random draws) must skip the first one's claim, until the first stack is gone."""
    import random

    monkeypatch.setenv("FLUX_DEVSTACK_PORTS", str(tmp_path / "claims"))
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    for run_dir in (first_dir, second_dir):
        run_dir.mkdir()
        (run_dir / "state.json").write_text("{}")
    with port_alloc.claiming(first_dir) as taken:
        first = port_alloc.allocate_block((0, 1), taken=taken, rng=random.Random(7))
    with port_alloc.claiming(second_dir) as taken:
        second = port_alloc.allocate_block((0, 1), taken=taken, rng=random.Random(7))
    assert {first, first + 1}.isdisjoint({second, second + 1})
    shutil.rmtree(first_dir)  # the first stack was removed: its ports are free again
    with port_alloc.claiming(second_dir) as taken:
        assert first not in taken and second not in taken  # a stack's own claim never blocks itself
    assert sorted(p.name for p in (tmp_path / "claims").glob("*.json")) == [port_alloc._claim_file(second_dir).name]


def test_a_stack_still_starting_keeps_its_claim_until_its_process_is_gone(tmp_path, monkeypatch):
    """Between its claim and its first ``state.json`` a starting stack has no state: its claim must hold while
    the process that claimed lives (two stacks started at once, in one process or two), and lapse after."""
    monkeypatch.setenv("FLUX_DEVSTACK_PORTS", str(tmp_path / "claims"))
    starting, other = tmp_path / "starting", tmp_path / "other"
    starting.mkdir()
    with port_alloc.claiming(starting) as taken:
        mine = port_alloc.allocate(taken)
    with port_alloc.claiming(other) as taken:
        assert mine in taken  # this process, which claimed, is alive
    claim = port_alloc._claim_file(starting)
    gone = subprocess.Popen(["true"])
    gone.wait()
    claim.write_text(json.dumps({**json.loads(claim.read_text()), "pid": gone.pid}))
    with port_alloc.claiming(other) as taken:
        assert mine not in taken
    assert not claim.exists()


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


def _orphan_of_a_killed_leader(tmp_path, child_env: str, new_session: bool = True) -> tuple[Stack, int]:
    """A service whose child (``sleep``, started with ``child_env``, in a session of its own or the service's)
    is left running after the service is killed with SIGKILL: the stack and the orphan's PID."""
    import signal

    ready = tmp_path / "leader" / "ready"
    script = (
        f"import pathlib, subprocess, time; child = subprocess.Popen(['/bin/sleep', '300'], env={child_env}, "
        f"start_new_session={new_session}); pathlib.Path({str(tmp_path / 'child.pid')!r}).write_text(str(child.pid)); "
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


def test_up_restarts_a_service_killed_with_sigkill_without_what_it_left_in_its_session(tmp_path):
    """An Airflow scheduler killed alone leaves its log server, which holds a database connection of the
    scheduler open (and with it the row locks of the transaction it was in): restarting the scheduler stops it."""
    stack, child = _orphan_of_a_killed_leader(tmp_path, "{}", new_session=False)
    stack.up()
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert [row.state for row in stack.status()] == ["healthy"]
    stack.down()


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


def test_an_up_for_other_folders_stops_nothing_without_restart(tmp_path, monkeypatch):
    monkeypatch.delenv("FLUX_DAGS_FOLDER", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run = tmp_path / "run"
    first = Stack(run_dir=run, dags_folder=tmp_path / "a", services=[FileService("x")], echo=lambda _: None)
    first.up()
    pid = _pid(first, "x")
    with pytest.raises(DevstackError, match=r"DAG folder .*/a \(this up asks for .*/b\).*--restart"):
        Stack(run_dir=run, dags_folder=tmp_path / "b", services=[FileService("x")], echo=lambda _: None).up()
    assert psutil.pid_exists(pid) and _pid(first, "x") == pid  # still running, untouched
    plain = Stack(run_dir=run, services=[FileService("x")], echo=lambda _: None)  # no folder: the running one
    assert plain.dags_folder == (tmp_path / "a").resolve()
    plain.up()
    assert _pid(first, "x") == pid
    messages = []
    Stack(run_dir=run, dags_folder=tmp_path / "b", services=[FileService("x")], echo=messages.append).up(restart=True)
    assert "restarting the stack with DAG folder" in messages[0] and _pid(first, "x") != pid
    assert first.load_state()["dags_folder"] == str((tmp_path / "b").resolve())
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


#: The client inside the namespace: sends 256 kB through the pipe, checks them reversed, tries another port.
CLIENT = (
    "import socket, sys\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\n"
    "s.sendall(bytes(range(256)) * 1000); s.shutdown(socket.SHUT_WR)\n"
    "got = b''\n"
    "while chunk := s.recv(65536): got += chunk\n"
    "assert got == (bytes(range(256)) * 1000)[::-1], len(got)\n"
    "try:\n    socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=3)\n"
    "except ConnectionRefusedError:\n    print('exact; elsewhere refused')\n"
)
INSIDE = (
    "ip link set lo up || exit 1\n"
    f'{sys.executable} -m flux_devstack.netpipe loopback "$0" "$1" >/dev/null &\n'
    "for _ in $(seq 200); do (: >/dev/tcp/127.0.0.1/$1) 2>/dev/null && break; sleep 0.05; done\n"
    'exec "$2" -c "$3" "$1" "$4"'
)


def answer_reversed(server: socket.socket) -> None:
    """Reads each whole request (to its half-close), answers it reversed."""
    while True:
        conn, _ = server.accept()
        with conn:
            request = b""
            while chunk := conn.recv(65536):
                request += chunk
            conn.sendall(request[::-1])


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root (unshare), as on CI")
def test_a_host_network_reaches_the_machine_only_through_its_pipe(tmp_path):
    """devstack.netpipe: inside a network namespace of its own (only a loopback), a client reaches a server on
    the machine's 127.0.0.1 through the pipe's two halves, bytes exact both ways (a request half-closed before
    its answer too); a port the pipe does not carry is not there."""
    with socket.socket() as server, socket.socket() as other:
        server.bind(("127.0.0.1", 0))
        server.listen()
        other.bind(("127.0.0.1", 0))
        other.listen()
        port, elsewhere = server.getsockname()[1], other.getsockname()[1]
        threading.Thread(target=answer_reversed, args=(server,), daemon=True).start()
        folder = tmp_path / "net"
        gateway = subprocess.Popen(
            [sys.executable, "-m", "flux_devstack.netpipe", "gateway", str(folder), str(port)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert gateway.stdout.readline().startswith("netpipe gateway: 1 ports")
            done = subprocess.run(
                [
                    "unshare",  # a PID namespace too: the pipe's half inside dies with bash, whatever happens
                    "--net",
                    "--pid",
                    "--fork",
                    "bash",
                    "-c",
                    INSIDE,
                    str(folder),
                    str(port),
                    sys.executable,
                    CLIENT,
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


def test_hive_services_start_with_an_empty_temp_folder_of_their_own(tmp_path):
    """A killed HiveServer2 leaves Spark's block files and S3A buffers behind (185 MB measured): each start of
    the metastore or HiveServer2 empties its own temp folder, which its JVM, Spark and Hadoop all use."""
    from flux_devstack.hive import HiveMetastore, SparkThriftServer

    ports = {"s3": 15000, "metastore": 15001, "hiveserver2": 15002}
    secrets = {"s3_access_key": "k", "s3_secret_key": "s"}
    ctx = Context(run_dir=tmp_path, ports=ports, secrets=secrets, dags_folder=tmp_path)
    for service in (HiveMetastore(), SparkThriftServer()):
        left = tmp_path / service.name / "tmp" / "blockmgr-1" / "0a" / "shuffle_0.data"
        left.parent.mkdir(parents=True)
        left.write_bytes(b"x" * 1024)
        service.prepare(ctx)
        assert list((tmp_path / service.name / "tmp").iterdir()) == []
        command = " ".join(service.command(ctx))
        assert f"-Djava.io.tmpdir={tmp_path / service.name / 'tmp'}" in command
        assert (
            f"<value>{tmp_path / service.name / 'tmp' / 'hadoop'}</value>"
            in (tmp_path / service.name / "conf" / "core-site.xml").read_text()
        )
    assert SparkThriftServer().environ(ctx)["SPARK_LOCAL_DIRS"] == str(tmp_path / "hiveserver2" / "tmp")


class SocketService(FileService):
    """Leaves a file named by its port outside the run directory, as weed leaves its sockets."""

    port_blocks = {"sock": (0,)}

    def __init__(self, name, outside: Path):
        super().__init__(name)
        self.outside = outside

    def command(self, ctx: Context) -> list[str]:
        (self.outside / f"{ctx.ports['sock']}.sock").write_text("")
        return super().command(ctx)

    def leftovers(self, ctx: Context) -> list[Path]:
        return [p for p in self.outside.glob("*.sock") if p.stem == str(ctx.ports["sock"])]


def test_down_removes_what_its_services_leave_outside_the_run_directory(tmp_path):
    """A service's leftovers (weed's sockets, named by port, in the system's temp folder) go when it stops:
    an up after a down may take other ports, and the old ones would stay forever."""
    outside = tmp_path / "tmp"
    outside.mkdir()
    stack = Stack(
        run_dir=tmp_path / "run", dags_folder=tmp_path, services=[SocketService("s", outside)], echo=lambda _: None
    )
    try:
        stack.up()
        assert len(list(outside.glob("*.sock"))) == 1
        stack.down()
        assert list(outside.glob("*.sock")) == []
    finally:
        stack.purge()
