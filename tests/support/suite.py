"""``make test``: the whole suite as two pytest processes side by side.

The cluster module (``tests/integration/test_cluster.py``) brings up a stack of its own (PostgreSQL, Celery,
two schedulers, two workers) and spends most of its time waiting on it, as the shared stack's tests do on
theirs; neither tier uses the machine's two cores to the full. So the cluster module runs in a second pytest
process beside the rest (each stack on its own ports: ``flux_devstack.ports``), its output kept in a log and
printed after the main process ends. With arguments (``make test PYTEST_ARGS=...``) it is one pytest process
on them, as ``python -m pytest`` would be.

The exit code is the worse of the two: a failure, or a process in which no test ran (pytest's 5), fails it.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support import ARTIFACTS, REPO

CLUSTER = "tests/integration/test_cluster.py"


def main(args: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest"]
    if args:
        return subprocess.call([*pytest, *args], cwd=REPO)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "cluster-tier.log"
    with open(log, "w") as out:
        # no cache plugin there: the main process owns .pytest_cache
        cluster = subprocess.Popen([*pytest, "-p", "no:cacheprovider", CLUSTER], cwd=REPO, stdout=out, stderr=out)
        try:
            main_rc = subprocess.call([*pytest, "-m", "not cluster"], cwd=REPO)
        finally:
            cluster_rc = cluster.wait()
    print(f"\n===== the cluster tier, run beside the rest ({CLUSTER}; log: {log.relative_to(REPO)}) =====")
    print(log.read_text(errors="replace"), flush=True)
    print(f"main tier exit {main_rc}, cluster tier exit {cluster_rc}", flush=True)
    return main_rc or cluster_rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
