"""``python -m flux_provider.throttle show | pin DATASET SLOTS | set DATASET SLOTS | unpin DATASET``.

Runs where ``airflow pools`` runs (it needs Airflow's metadata database).
``pin`` holds the slots until ``unpin`` (the controller enforces it, even outside
the data set's bounds); ``set`` changes them once and the controller adapts
from there (within the bounds). Every change is recorded with ``--reason``.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from sqlalchemy import select

from flux_provider.throttle import migrations, store
from flux_provider.throttle.controller import set_limit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flux_provider.throttle", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("show", help="every data set: pool, slots, pin, bounds, last change")
    for name in ("pin", "set"):
        cmd = sub.add_parser(name, help=f"{name} a data set's slots")
        cmd.add_argument("dataset")
        cmd.add_argument("slots", type=int)
        cmd.add_argument("--reason")
    unpin = sub.add_parser("unpin", help="give the data set back to the controller")
    unpin.add_argument("dataset")
    unpin.add_argument("--reason")
    args = parser.parse_args(argv)

    from airflow.models.pool import Pool
    from airflow.settings import engine
    from airflow.utils.session import create_session

    migrations.ensure_tables(engine)
    with create_session() as session:
        if args.command == "show":
            print(f"{'DATA SET':<24}{'POOL':<28}{'SLOTS':>6}{'PINNED':>8}{'BOUNDS':>8}  LAST CHANGE")
            for row in session.execute(select(store.throttle).order_by(store.throttle.c.dataset)).mappings():
                pool = session.execute(select(Pool).where(Pool.pool == row["pool"])).scalar_one_or_none()
                last = store.last_event(session, row["dataset"])
                change = f"{last['at']:%Y-%m-%d %H:%M} {last['reason']}" if last else "-"
                print(
                    f"{row['dataset']:<24}{row['pool']:<28}{pool.slots if pool else '-':>6}"
                    f"{row['pinned'] if row['pinned'] is not None else '-':>8}"
                    f"{row['low']:>4}-{row['high']:<3}  {change}"
                )
            return 0
        try:
            slots = None if args.command == "unpin" else args.slots
            result = set_limit(
                session,
                args.dataset,
                slots,
                pin=args.command == "pin",
                actor=f"cli {getpass.getuser()}",
                reason=args.reason,
            )
        except KeyError:
            print(
                f"error: no data set {args.dataset!r} (run `python -m flux_provider.specs pools sync`)", file=sys.stderr
            )
            return 1
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(
        f"{result['dataset']}: pool {result['pool']} {result['previous']} -> {result['slots']}"
        + (" (pinned)" if result["pinned"] is not None else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
