"""``python -m flux_devstack up | down | status | env | trigger DAG_ID [--logical-date D] [--conf JSON] |
demo [--rows N]``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from flux_devstack.service import DevstackError
from flux_devstack.stack import UP, Stack, password_command


def _print_status(stack: Stack) -> bool:
    rows = stack.status()
    print(f"{'SERVICE':<24}{'PORT':>7}{'PID':>9}  {'STATE':<12}DETAIL")
    for row in rows:
        print(f"{row.name:<24}{row.port or '-':>7}{row.pid or '-':>9}  {row.state:<12}{row.detail}")
    return all(row.state in UP for row in rows)


def parser() -> argparse.ArgumentParser:
    """The command line: the stack's options, then one subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m flux_devstack", description="The flux local stack of real services."
    )
    parser.add_argument(
        "--run-dir", type=Path, help="state, data and logs (default: $FLUX_DEVSTACK_DIR or ./.devstack)"
    )
    parser.add_argument(
        "--dags-folder",
        type=Path,
        help="DAG folder for Airflow (default: $FLUX_DAGS_FOLDER, else the running stack's, else ./dags)",
    )
    parser.add_argument(
        "--dag-bundle",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="an extra DAG bundle for Airflow (repeatable); NAME=git:REPOSITORY[#SUBDIR] is a GitDagBundle "
        "tracking main",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack (or reuse a healthy one) and wait until every service answers")
    up.add_argument(
        "--cluster",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the cluster shape: PostgreSQL, CeleryExecutor on Redis, two schedulers, a triggerer, two workers "
        "(default: the shape the stack has, else the light embedded one)",
    )
    up.add_argument(
        "--restart",
        action="store_true",
        help="if the running stack serves other DAG folders or bundles or has the other shape, stop it and start "
        "it with these (without it, such an up fails and says what differs)",
    )
    sub.add_parser("down", help="stop every process of the stack")
    sub.add_parser(
        "clean",
        help="stop the stack and remove everything it wrote: its run directory, a private PostgreSQL's data "
        "folder, and its database and Redis keys on the machine's servers",
    )
    sub.add_parser("status", help="each service: port, PID, health (exit 1 if any is not healthy)")
    sub.add_parser("env", help="print `export` lines for a shell or test")
    _run_commands(sub)
    return parser


def _run_commands(sub) -> None:
    """The subcommands that run DAGs on the stack: trigger and demo."""
    trigger = sub.add_parser("trigger", help="run a DAG through the stack's scheduler and wait for it")
    trigger.add_argument("dag_id")
    trigger.add_argument("--timeout", type=float, default=600.0)
    trigger.add_argument(
        "--logical-date",
        help="the run's logical date (ISO 8601, e.g. 2026-11-27T00:00:00Z); "
        "default: none, as a manual run in Airflow 3",
    )
    trigger.add_argument(
        "--conf",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="the run's conf, e.g. '{\"day\": \"2026-11-27\"}' (the run's {{ flux_day }})",
    )
    demo = sub.add_parser("demo", help="run the sample media bundle through the scheduler and print a report")
    demo.add_argument("--rows", type=int, default=20_000, help="viewing sessions to generate")


def _up(stack: Stack, args) -> int:
    stack.up(restart=args.restart)
    ok = _print_status(stack)
    env = stack.env()
    print(
        f"\nAirflow UI: {env['FLUX_AIRFLOW_URL']}  (user {env['FLUX_AIRFLOW_USER']}, "
        f"password: {password_command(stack.run_dir)})"
    )
    return 0 if ok else 1


def _down(stack: Stack, args) -> int:
    pids = stack.down()
    print(f"stopped {len(pids)} processes" if pids else "nothing was running")
    return 0


def _clean(stack: Stack, args) -> int:
    removed = stack.purge()
    print("removed " + ", ".join(removed) if removed else f"nothing to remove for {stack.run_dir}")
    return 0


def _status(stack: Stack, args) -> int:
    return 0 if _print_status(stack) else 1


def _env(stack: Stack, args) -> int:
    for key, value in stack.env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _demo(stack: Stack, args) -> int:
    from flux_devstack.demo import report, run_demo

    stack.up()
    env = stack.env()
    return 0 if report(run_demo(env, args.rows), env) else 1


def _trigger(stack: Stack, args) -> int:
    from flux_devstack.airflow_api import AirflowClient

    env = stack.env()
    client = AirflowClient(env["FLUX_AIRFLOW_URL"], env["FLUX_AIRFLOW_USER"], env["FLUX_AIRFLOW_PASSWORD"])
    result = client.run_dag(args.dag_id, conf=args.conf, timeout=args.timeout, logical_date=args.logical_date)
    print(f"DAG {result.dag_id} run {result.run_id}: {result.state} in {result.duration:.1f}s")
    for task_id, state in result.task_states.items():
        value = client.xcom(result.dag_id, result.run_id, task_id)
        print(f"  {task_id:<30}{state:<10}{'' if value is None else value}")
    return 0 if result.state == "success" else 1


COMMANDS = {
    "up": _up,
    "down": _down,
    "clean": _clean,
    "status": _status,
    "env": _env,
    "demo": _demo,
    "trigger": _trigger,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    bundles = dict(item.split("=", 1) for item in args.dag_bundle)
    # no --dag-bundle: keep the bundles the running stack was started with
    stack = Stack(
        run_dir=args.run_dir,
        dags_folder=args.dags_folder,
        dag_bundles=bundles or None,
        cluster=getattr(args, "cluster", None),
    )
    try:
        return COMMANDS[args.command](stack, args)
    except DevstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
