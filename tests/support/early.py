"""Work that needs no service, started when the session starts so that it overlaps the tier that needs none
(pytest keeps one of the machine's two cores busy there): building the wheel once, and installing it into fresh
venvs for the quick start and for the other Pythons. The test that owns a job waits for it and asserts on what
it returns (a job that fails raises in that test). Jobs run one at a time, at a lower CPU priority (``nice``).

A job that was not started early (the test runs alone) runs when its test asks for it.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tests.support import REPO

_pool = ThreadPoolExecutor(1, thread_name_prefix="flux-early")
_jobs: dict[str, Future] = {}
_lock = threading.Lock()
_folders: list[Path] = []


def start(name: str, job: Callable[[], object]) -> Future:
    """Start ``job`` in the background under ``name`` (once)."""
    with _lock:
        if name not in _jobs:
            _jobs[name] = _pool.submit(job)
        return _jobs[name]


def result(name: str, job: Callable[[], object], timeout: float = 1800) -> object:
    """What ``job`` returned (started now if it was not started early); its exception is raised here."""
    return start(name, job).result(timeout)


def folder(prefix: str) -> Path:
    """A fresh temporary folder, removed when the session ends."""
    made = Path(tempfile.mkdtemp(prefix=f"flux-{prefix}-"))
    _folders.append(made)
    return made


def cleanup() -> None:
    _pool.shutdown(wait=True, cancel_futures=True)
    for made in _folders:
        shutil.rmtree(made, ignore_errors=True)


def niced(command: list[str]) -> list[str]:
    """``command`` at a lower CPU priority: the foreground tests keep theirs."""
    return ["nice", "-n", "10", *command]


@functools.cache
def wheel() -> Path:
    """The wheel of this checkout, built once per session (by the jobs, which run one at a time)."""
    out = folder("dist")
    built = subprocess.run(
        niced([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)]),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = out.glob("*.whl")
    return found
