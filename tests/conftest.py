"""Two tiers: ``tests/unit/<area>/`` needs no service (``make unit``); ``tests/integration/`` runs on the
real local stack. Shared data and helpers live in ``tests/support/`` (no test module imports another).

The session fixture ``stack`` brings the suite's own local stack up once (in
``.devstack-test``, never the ``.devstack`` of ``make demo``; or reuses a
healthy one in that run directory) and exports its connections
(``AIRFLOW_CONN_*``) into this process, so Airflow's own hooks reach the real
services.

Order: the tier that needs no service first; then the ``cluster`` module, which brings its own stack up and
down before the shared one starts; then the tests on the shared stack; last the ``lifecycle`` tests, which
stop it. ``make test`` runs the cluster module in a pytest process of its own beside the rest
(``tests/support/suite.py``): both tiers mostly wait on their stacks.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.support import REPO, RUN_DIR

# This test process gets its own, throw-away Airflow home: importing Airflow must
# never write an airflow.cfg into the stack's home (the stack owns that file).
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="flux-pytest-airflow-")
atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# The suite's stacks start with the host limit off (the executors as Airflow makes them), so the tests written
# for a pool's or a source's concurrency see the scheduler they were written against; the burst test turns it
# on (tests/integration/test_fleet_burst.py) and the unit tests cover it.
os.environ.setdefault("FLUX_HOST_LIMIT", "off")


def pytest_collection_modifyitems(config, items):
    """A test that needs the stack (directly or through a fixture) is a ``stack`` test, marked or not:
    ``-m "not stack"`` (``make unit``) is then exactly the tier that needs no service."""
    unit = REPO / "tests" / "unit"
    for item in items:
        needs_stack = "stack" in getattr(item, "fixturenames", ())
        if needs_stack and unit in Path(str(item.path)).parents:
            raise pytest.UsageError(f"{item.nodeid} needs the stack: it belongs in tests/integration")
        if needs_stack and item.get_closest_marker("stack") is None:
            item.add_marker(pytest.mark.stack)

    def tier(item) -> int:
        if item.get_closest_marker("lifecycle") is not None:
            return 3
        if unit in Path(str(item.path)).parents:
            return 0
        return 1 if item.get_closest_marker("cluster") is not None else 2

    items.sort(key=tier)
    _start_early_work(items)


def _start_early_work(items) -> None:
    """The installs into fresh venvs start now, in the background, when their tests are selected (they overlap
    the tier that needs no service; ``tests/support/early.py``)."""
    import functools

    from tests.support import early, installs

    for item in items:
        module = Path(str(item.path)).name
        if module == "test_quickstart.py":
            early.start("quickstart", installs.quick_start)
        elif module == "test_python_versions.py" and hasattr(item, "callspec"):
            version = item.callspec.params["version"]
            if installs.interpreter(version):
                early.start(f"python-{version}", functools.partial(installs.on_python, version))


def pytest_sessionfinish(session, exitstatus):
    from tests.support import early

    early.cleanup()


@pytest.fixture(scope="session")
def stack():
    from flux_devstack import Stack
    from tests.support.fleet import ensure_bundle
    from tests.support.git_bundle import ensure_repository

    fleet = ensure_bundle(RUN_DIR / "fleet")  # data sets tests generate (the dashboard's fifty, ...)
    repository = RUN_DIR / "git" / "flux-bundle.git"  # a GitDagBundle's remote (test_git_bundle.py)
    ensure_repository(repository)
    stack = Stack(
        run_dir=RUN_DIR,
        dags_folder=REPO / "dags",
        dag_bundles={"flux-tests": REPO / "tests" / "dags", "flux-fleet": fleet, "flux-git": f"git:{repository}#dags"},
    )
    stack.up(restart=True)  # its own stack: started anew if it serves other folders
    env = stack.env()
    from tests.support.throttle import host_limit

    host_limit(env, os.environ["FLUX_HOST_LIMIT"])  # a reused stack too
    env.pop("AIRFLOW_HOME")
    os.environ.update(env)
    # operators the tests run in this process stage their files where the stack's tasks do, not in /tmp
    os.environ["AIRFLOW__FLUX__STAGING_DIR"] = str(RUN_DIR / "staging")
    yield stack


@pytest.fixture(scope="session")
def airflow_client(stack):
    from flux_devstack.airflow_api import AirflowClient

    env = stack.env()
    return AirflowClient(env["FLUX_AIRFLOW_URL"], env["FLUX_AIRFLOW_USER"], env["FLUX_AIRFLOW_PASSWORD"])


@pytest.fixture(scope="session")
def postgres(stack) -> dict:
    """The stack's PostgreSQL server (the machine's, or the stack's private one) in a database of the suite's
    own (``<the stack's database>_suite``, which ``flux_devstack clean`` drops with the stack's), for the DB-API
    engine's and the migrations' tests. Made anew for the session and dropped after it."""
    from urllib.parse import urlsplit

    import psycopg2

    env = stack.env()
    server = urlsplit(env["FLUX_STACK_POSTGRES_URL"])
    name = urlsplit(env["FLUX_AIRFLOW_DB"]).path.strip("/") + "_suite"
    where = {"host": server.hostname, "port": server.port or 5432, "user": server.username or "postgres"}

    def admin(statement: str) -> None:
        conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **where)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.close()

    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{name}"')
    yield {**where, "dbname": name}
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def webhook():
    """A real local webhook receiver: ``webhook.url``, and ``webhook.received`` (the JSON bodies in order)."""
    from tests.support.webhook import WebhookReceiver

    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def unique() -> str:
    """A name part unique to one test (SeaweedFS keeps empty prefixes: never reuse a location)."""
    return uuid.uuid4().hex[:10]
