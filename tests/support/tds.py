"""A TDS stand-in server process of a test's own (not the stack's), and pymssql connections to it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pymssql

from flux_devstack.ports import allocate

PASSWORD = "s3cret-for-tds"


@contextlib.contextmanager
def tds_server(home: Path, seeds: tuple[Path, ...] = ()) -> Iterator[tuple[int, subprocess.Popen]]:
    """``python -m flux_devstack.tds`` on a free port with its own SQLite file; yields (port, process)."""
    users = home / "users.json"
    users.write_text(json.dumps({"flux": PASSWORD}))
    port = allocate(set())
    argv = [sys.executable, "-m", "flux_devstack.tds", "--port", str(port), "--db", str(home / "db.sqlite")]
    argv += ["--users", str(users), *[arg for seed in seeds for arg in ("--seed", str(seed))]]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            connect(port, login_timeout=2).close()
            break
        except pymssql.Error:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(proc.stderr.read().decode()[-2000:]) from None
            time.sleep(0.2)
    try:
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(10)


def connect(port: int, **kwargs):
    return pymssql.connect(server="127.0.0.1", port=port, user="flux", password=PASSWORD, database="flux", **kwargs)
