"""The nightly burst: N small data sets triggered at once on the benchmarks' stack, today's behaviour against
the new one, alternated in the same run, with and without a fixed background CPU load.

Used by ``fleet_bench.py --burst N``. The benchmarks' fleet bundle holds two copies of the generated fleet
(``flux_devstack.burst``): ``today_NNN`` built with Airflow's default weight rule (``build_dags(...,
priorities=False)``) and run with the host limit off (``python -m flux_provider.throttle host off``), and
``new_NNN`` built with the fleet's stage priorities and run with the adaptive host limit. Both sides run the
same data sets on the same stack, in the same process model (the stack's scheduler, LocalExecutor, its
``[core] parallelism``), each triggered the way a user would: every run at once through the REST API. Each
pair alternates which side goes first. The background load is a busy loop on each core
(:class:`flux_devstack.burst.BackgroundLoad`), started before the triggers and stopped when the burst ends.

Reported per burst: time from the first trigger to the first and to the median landed run, runs per minute
over time, tries, failed tries, tries lost to the orchestrator (and how many were given back), retries spent,
the controller's period (p50/p95, as the controller recorded it on its lease, polled every 10 s), and the
scheduler's health checks that answered 200.
"""

from __future__ import annotations

from pathlib import Path

from flux_devstack import burst

HERE = Path(__file__).resolve().parent
FLEET = HERE.parent / ".devstack-bench" / "fleet"
SIDES = {"today": "specs_today", "new": "specs"}

TODAY_DAG_FILE = '''"""Today's behaviour, for the burst benchmark: the same fleet with Airflow's default weight rule."""

from pathlib import Path

from airflow.sdk import DAG

from flux_provider.specs.factory import build_dags

dags: dict[str, DAG] = build_dags(Path(__file__).parent / "specs_today", priorities=False)
globals().update(dags)
'''


def prepare(env: dict, client, size: int) -> dict[str, list[str]]:
    """Both sides' specs written, their pools synced and their DAGs parsed: ``side -> dag ids``."""
    (FLEET / "fleet_today.py").write_text(TODAY_DAG_FILE)
    burst.prepare_source(env)
    out = {}
    for side, folder in SIDES.items():
        texts = burst.specs(side, size)
        burst.write_specs(FLEET / folder, texts)
        for stale in (FLEET / folder).glob(f"{side}_*.xml"):
            if stale.stem not in texts:
                stale.unlink()
        burst.sync_pools(env, FLEET / folder)
        out[side] = [f"flux_{name}" for name in texts]
    for dag_ids in out.values():
        burst.wait_parsed(client, dag_ids)
    return out


def host_mode(env: dict, value: str) -> None:
    burst.host_limit(env, value, "burst benchmark")


def one_burst(env: dict, client, side: str, dag_ids: list[str], tag: str, load: bool) -> dict:
    host_mode(env, "off" if side == "today" else "adaptive")
    if load:
        with burst.BackgroundLoad(seconds=7200):
            report = burst.run_burst(env, client, dag_ids, tag, timeout=7200)
    else:
        report = burst.run_burst(env, client, dag_ids, tag, timeout=7200)
    row = {"side": side, "load": load, **report.as_dict()}
    print(
        f"{side:>5} {'loaded' if load else 'quiet':>6}: {report.succeeded}/{report.runs} ok, first "
        f"{report.first_landed_s:.0f}s, median {report.median_landed_s:.0f}s, last {report.last_landed_s:.0f}s; "
        f"tries {report.tries}, failed {report.failed_tries}, lost {report.lost_tries} "
        f"({report.lost_given_back} given back), retries {report.retries_spent}; period p50 {report.period_p50} "
        f"p95 {report.period_p95}; health {report.health_ok}/{report.health_checks}",
        flush=True,
    )
    return row


def run(env: dict, client, size: int, pairs: int, loads: list[bool]) -> list[dict]:
    """``pairs`` alternated pairs (today/new, then new/today, ...) for each load setting."""
    import uuid

    sides = prepare(env, client, size)
    rows = []
    for load in loads:
        for pair in range(pairs):
            order = ("today", "new") if pair % 2 == 0 else ("new", "today")
            for side in order:
                rows.append(one_burst(env, client, side, sides[side], uuid.uuid4().hex[:8], load))
    host_mode(env, "adaptive")
    return rows


__all__ = ["run"]
