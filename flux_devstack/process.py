"""Start, identify and stop local service processes by PID.

Every service runs in its own session (``start_new_session``) with its output
in a log file. A PID is only trusted together with the process start time
recorded when it was spawned, so a recycled PID is never killed by mistake.
The start is compared as seconds since the machine booted: the wall-clock
start moves with every step of the system clock (NTP), and a stack would then
take its own live services for dead ones.
Stopping kills the whole tree: the session leader, everything in its session
and every descendant (Spark and Airflow both fork helpers).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

# Popen objects of the children this process spawned. Kept so that their exit
# status is read through Popen (subprocess reaps forgotten children itself,
# which would otherwise hide a one-shot command's exit code).
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class ProcessRecord:
    """What is needed to find (and only find) a process again later."""

    pid: int
    create_time: float
    log: str
    #: Sent to the process alone before the tree is terminated (PostgreSQL: SIGINT, its fast shutdown;
    #: a SIGTERM to each of its backends would look like crashes to it). 0: the tree gets SIGTERM at once.
    stop_signal: int = 0
    #: The start in seconds since boot (what identifies the process; None in records from older stacks).
    since_boot: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> ProcessRecord:
        return cls(
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            log=str(data["log"]),
            stop_signal=int(data.get("stop_signal", 0)),
            since_boot=None if data.get("since_boot") is None else float(data["since_boot"]),
        )

    def process(self) -> psutil.Process | None:
        """The live process, or None if it exited (or the PID now belongs to another)."""
        try:
            proc = psutil.Process(self.pid)
            if self.since_boot is not None:
                if abs(_since_boot(self.pid) - self.since_boot) > 0.5:
                    return None
            elif abs(proc.create_time() - self.create_time) > 0.5:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None


def spawn(argv: Sequence[str], *, log: Path, env: Mapping[str, str], cwd: Path, stop_signal: int = 0) -> ProcessRecord:
    """Start ``argv`` detached in its own session, stdout+stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {argv[0]}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    child = psutil.Process(proc.pid)
    return ProcessRecord(
        pid=proc.pid,
        create_time=child.create_time(),
        log=str(log),
        stop_signal=int(stop_signal),
        since_boot=_since_boot(proc.pid),
    )


def _since_boot(pid: int) -> float:
    """When process ``pid`` started, in seconds since the machine booted. psutil derives a (new) Process's
    wall-clock start from the boot time it reads now, so the difference is the kernel's own count, whatever
    the clock did since."""
    return psutil.Process(pid).create_time() - psutil.boot_time()


def exit_code(record: ProcessRecord) -> int | None:
    """Reap ``record`` if it is our exited child; return its exit code, else None."""
    if record.pid in _CHILDREN:
        return _CHILDREN[record.pid].poll()
    try:
        pid, status = os.waitpid(record.pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if pid == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def session_tree(proc: psutil.Process) -> list[psutil.Process]:
    """The process, its descendants and every other member of its session."""
    members = {proc.pid: proc}
    try:
        for child in proc.children(recursive=True):
            members[child.pid] = child
        sid = os.getsid(proc.pid)
    except (psutil.Error, ProcessLookupError):
        return list(members.values())
    members.update((p.pid, p) for p in session_members(sid) if p.pid not in members)
    return list(members.values())


def session_members(sid: int) -> list[psutil.Process]:
    """The live processes of session ``sid``. A session outlives its leader while a member lives, and the
    kernel gives its number to no new process until then: after the leader died, these are its orphans
    (an Airflow scheduler killed alone leaves its log server, which holds one of the scheduler's database
    connections open, and with it the transaction and row locks the scheduler was in)."""
    members = []
    for other in psutil.process_iter():
        try:
            if os.getsid(other.pid) == sid:
                members.append(other)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def _terminate(procs: list[psutil.Process], grace: float) -> list[int]:
    """SIGTERM each of ``procs``, SIGKILL those still alive after ``grace`` s; the PIDs signalled."""
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in procs]


def stop(record: ProcessRecord, *, grace: float = 15.0) -> list[int]:
    """Terminate the process tree of ``record``: SIGTERM, then SIGKILL after ``grace`` s.

    Returns the PIDs that were signalled. Safe to call on a dead record: it stops what is left of the dead
    process's session.
    """
    proc = record.process()
    if proc is None:
        exit_code(record)
        if psutil.pid_exists(record.pid):  # another process has the number: the session is gone
            return []
        return _terminate(session_members(record.pid), grace)  # what the dead leader left behind
    tree = session_tree(proc)
    if record.stop_signal:
        try:
            proc.send_signal(record.stop_signal)
            proc.wait(timeout=grace)
        except psutil.TimeoutExpired:
            pass
        except psutil.Error:
            pass
    signalled = _terminate([p for p in tree if p.is_running()], grace)
    signalled = sorted(set(signalled) | ({proc.pid} if record.stop_signal else set()))
    exit_code(record)
    return signalled


def stop_owned(variable: str, value: str, *, workdirs: Sequence[Path] = (), grace: float = 10.0) -> list[int]:
    """Terminate every process whose environment has ``variable=value``, or that works in one of
    ``workdirs`` (the services' own folders: a process that sets its title, as Airflow's do, overwrites
    the environment it shows): what a service started and left behind when it died (a scheduler killed
    with SIGKILL leaves its executor's workers running, re-parented away from any tree we know).
    Returns the PIDs signalled."""
    me = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    places = {str(Path(w).resolve()) for w in workdirs}
    owned = []
    for proc in psutil.process_iter():
        if proc.pid in me:
            continue
        try:
            if proc.environ().get(variable) == value or proc.cwd() in places:
                owned.append(proc)
        except psutil.Error:  # gone, a zombie, or not ours to read
            continue
    return _terminate(owned, grace)


def tail(path: str | Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (empty string if it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
