"""The suite's git repository served to the stack as a GitDagBundle (not tests): made before the stack starts,
with one commit, so the bundle has a ``main`` to track from the first moment."""

from __future__ import annotations

import subprocess
from pathlib import Path

AUTHOR = ["-c", "user.name=flux tests", "-c", "user.email=flux-tests@example.com"]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *AUTHOR, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def ensure_repository(bare: Path) -> Path:
    """The bare repository at ``bare`` (made with a first commit if missing) and its working clone beside it."""
    work = bare.with_suffix(".work")
    if not (bare / "HEAD").exists():
        bare.mkdir(parents=True, exist_ok=True)
        git("init", "--bare", "--initial-branch=main", str(bare), cwd=bare.parent)
    if not (work / ".git").exists():
        git("clone", str(bare), str(work), cwd=bare.parent)
        git("checkout", "-B", "main", cwd=work)
        if not git("ls-remote", "--heads", "origin", "main", cwd=work):
            (work / "dags").mkdir(exist_ok=True)
            (work / "dags" / "README.md").write_text("DAGs of the flux-git test bundle.\n")
            commit(work, "a first commit: the bundle exists")
    return work


def commit(work: Path, message: str) -> str:
    """Commit everything in ``work``, push it to ``main``; returns the commit's SHA."""
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)
