"""The nightly fleet on the stack: 60 small data sets triggered at once on a host that also carries a fixed CPU
load (a busy loop on one core; the benchmark puts one on each). Runs land in order (the first lands before the
last one's export starts), every run succeeds, no service restarts, and no recovery retry is spent on a try
lost to the orchestrator: read from Airflow's runs and task instances and the controller's tables
(flux_devstack.burst). The host limit is on for this test (the suite's other tests run with it off)."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from flux_devstack import burst
from flux_devstack.stack import UP
from flux_provider.rules import DEFAULT_RULES, max_retries
from tests.support import RUN_DIR
from tests.support.throttle import host_limit

SPECS = RUN_DIR / "fleet" / "specs"  # the stack's bundle of generated data sets (flux-fleet)
SIZE = 60
RETRIES = max_retries(DEFAULT_RULES)  # the burst's data sets keep the default rules


def test_sixty_runs_due_at_once_on_a_loaded_host_land_in_order_and_lose_no_retry(stack, airflow_client, unique):
    env = stack.env()
    prefix = f"burst{unique[:6]}"
    texts = burst.specs(prefix, SIZE)
    dag_ids = [f"flux_{name}" for name in texts]
    pids = {s.name: s.pid for s in stack.status()}
    burst.write_specs(SPECS, texts)
    host_limit(env, "adaptive")
    try:
        burst.prepare_source(env)
        burst.sync_pools(env, SPECS)
        burst.wait_parsed(airflow_client, dag_ids)
        # a busy loop on one of the two cores: a loaded host, at half the benchmark's load to keep the suite short
        with burst.BackgroundLoad(seconds=1800, cores=1):
            report = burst.run_burst(env, airflow_client, dag_ids, unique, timeout=1500)
    finally:
        burst.remove_specs(SPECS, texts)
        host_limit(env, "off")
    print(report.as_dict())
    assert report.succeeded == SIZE, report
    assert report.first_landed_s < report.last_export_start_s, report  # a run lands while exports still start
    assert report.rule_retries_on_lost == 0, report
    # the rules counted only their own tries: a given-back try raised max_tries by one, once per lost try
    with create_engine(env["FLUX_AIRFLOW_DB"]).connect() as conn:
        given = conn.execute(
            text("SELECT COUNT(*) FROM flux_lost_tries WHERE given_back = 1 AND dag_id LIKE :p"),
            {"p": f"flux_{prefix}%"},
        ).scalar()
        raised = conn.execute(
            text("SELECT COALESCE(SUM(max_tries - 5), 0) FROM task_instance WHERE dag_id LIKE :p AND max_tries > 5"),
            {"p": f"flux_{prefix}%"},
        ).scalar()
    assert given == report.lost_given_back and raised == given, (given, raised)
    after = stack.status()
    assert all(s.state in UP for s in after), [(s.name, s.state, s.detail) for s in after]
    assert {s.name: s.pid for s in after} == pids, "a service was restarted during the burst"
