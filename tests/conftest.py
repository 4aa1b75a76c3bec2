"""Test tiers: pure tests need nothing; ``stack`` tests use the real local stack.

The session fixture ``stack`` brings the suite's own local stack up once (in
``.devstack-test``, never the ``.devstack`` of ``make demo``; or reuses a
healthy one in that run directory) and exports its connections
(``AIRFLOW_CONN_*``) into this process, so Airflow's own hooks reach the real
services. Tests marked ``lifecycle`` stop the shared stack and always run last.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The suite's stack lives in a run directory of its own (its own processes, ports, Airflow database and
# data), so nothing a test creates (data sets, pools, faults, runs) ever shows in the stack that
# `make demo` / `make up` use, and a stack the user is working with is never stopped by the suite.
RUN_DIR = Path(os.environ.get("FLUX_TEST_DEVSTACK_DIR") or REPO / ".devstack-test").resolve()

# This test process gets its own, throw-away Airflow home: importing Airflow must
# never write an airflow.cfg into the stack's home (the stack owns that file).
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="flux-pytest-airflow-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def pytest_collection_modifyitems(config, items):
    """A test that needs the stack (directly or through a fixture) is a ``stack`` test, marked or not:
    ``-m "not stack"`` (``make unit``) is then exactly the tier that needs no service."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()) and item.get_closest_marker("stack") is None:
            item.add_marker(pytest.mark.stack)
    items.sort(key=lambda item: item.get_closest_marker("lifecycle") is not None)


@pytest.fixture(scope="session")
def stack():
    from flux_provider.devstack import Stack

    stack = Stack(run_dir=RUN_DIR, dags_folder=REPO / "dags", dag_bundles={"flux-tests": REPO / "tests" / "dags"})
    stack.up()
    env = stack.env()
    env.pop("AIRFLOW_HOME")
    os.environ.update(env)
    yield stack


@pytest.fixture(scope="session")
def airflow_client(stack):
    from flux_provider.devstack.airflow_api import AirflowClient

    env = stack.env()
    return AirflowClient(env["FLUX_AIRFLOW_URL"], env["FLUX_AIRFLOW_USER"], env["FLUX_AIRFLOW_PASSWORD"])


@pytest.fixture
def unique() -> str:
    """A name part unique to one test (SeaweedFS keeps empty prefixes: never reuse a location)."""
    return uuid.uuid4().hex[:10]
