"""What tests share (data, helpers, paths): plain modules, imported by tests; no test lives here, and no
test module imports another."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"

# The suite's stack lives in a run directory of its own (its own processes, ports, Airflow database and
# data), so nothing a test creates (data sets, pools, faults, runs) ever shows in the stack that
# `make demo` / `make up` use, and a stack the user is working with is never stopped by the suite.
RUN_DIR = Path(os.environ.get("FLUX_TEST_DEVSTACK_DIR") or REPO / ".devstack-test").resolve()
