"""Pick free TCP ports on the loopback interface.

Base ports come from [15000, 22000) and every port stays below 32768, the
start of the kernel's ephemeral range, so an outgoing connection never takes
a port between allocation and bind. Some
services open extra ports at fixed offsets (SeaweedFS: each HTTP port N also
opens gRPC on N+10000), so a *block* can be requested.

A port that is free when picked stays free until its service binds it, seconds
later: two stacks starting at once could pick the same one. So every stack
claims its ports in a machine-wide registry (a folder of one JSON file per run
directory, under a lock), and a pick skips the ports other stacks claimed. A claim
lapses when its run directory is gone, or when it has no ``state.json`` and the
process that claimed is gone: a stack that is still starting has written no
state yet, and its claim holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil

LOW, HIGH = 15000, 22000
EPHEMERAL = 32768


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on ``port`` (checked on loopback and on all interfaces)."""
    for bind_host in (host, "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((bind_host, port))
            except OSError:
                return False
    return True


def allocate_block(offsets: Iterable[int], *, taken: set[int], rng: random.Random | None = None) -> int:
    """A base port N such that N+offset is free (and not in ``taken``) for every offset."""
    offsets = sorted(set(offsets))
    rng = rng or random.Random()
    if LOW + offsets[-1] >= EPHEMERAL:
        raise ValueError(f"port offsets {offsets} do not fit below {EPHEMERAL}")
    for _ in range(500):
        base = rng.randrange(LOW, min(HIGH, EPHEMERAL - offsets[-1]))
        ports = [base + off for off in offsets]
        if all(p not in taken and is_free(p) for p in ports):
            taken.update(ports)
            return base
    raise RuntimeError(f"no free block of ports {offsets} in [{LOW}, {HIGH}) after 500 tries")


def allocate(taken: set[int], rng: random.Random | None = None) -> int:
    """One free port not in ``taken`` (which is updated)."""
    return allocate_block([0], taken=taken, rng=rng)


def registry() -> Path:
    """The machine's claims folder (``$FLUX_DEVSTACK_PORTS``, else ``<temp>/flux-devstack-ports``)."""
    return Path(os.environ.get("FLUX_DEVSTACK_PORTS") or Path(tempfile.gettempdir()) / "flux-devstack-ports")


def _claim_file(run_dir: Path) -> Path:
    return registry() / (hashlib.sha1(str(run_dir).encode()).hexdigest()[:12] + ".json")


def _lapsed(owner: dict) -> bool:
    """A claim whose stack is gone: its run directory was removed, or it has no state and no claimer."""
    run_dir = Path(owner["run_dir"])
    if not run_dir.is_dir():
        return True
    pid = int(owner.get("pid", 0))
    return not (run_dir / "state.json").exists() and not (pid > 0 and psutil.pid_exists(pid))


@contextlib.contextmanager
def claiming(run_dir: Path) -> Iterator[set[int]]:
    """Under the machine-wide lock: the ports other stacks claim (a stack whose run directory has no
    ``state.json`` any more claims none). The ports added to the set are claimed for ``run_dir`` at the end."""
    folder = registry()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken: set[int] = set()
        for claim in folder.glob("*.json"):
            try:
                owner = json.loads(claim.read_text())
            except (OSError, ValueError):
                continue
            if owner["run_dir"] == str(run_dir):
                continue
            if _lapsed(owner):
                claim.unlink(missing_ok=True)
                continue
            taken.update(owner["ports"])
        others = set(taken)
        yield taken
        mine = _claim_file(run_dir)
        tmp = mine.with_suffix(".tmp")
        tmp.write_text(json.dumps({"run_dir": str(run_dir), "pid": os.getpid(), "ports": sorted(taken - others)}))
        tmp.replace(mine)


def release(run_dir: Path) -> None:
    """Forget ``run_dir``'s claim (its stack is removed)."""
    _claim_file(run_dir).unlink(missing_ok=True)
