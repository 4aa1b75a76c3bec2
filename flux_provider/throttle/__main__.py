"""``python -m flux_provider.throttle``: show, pin, set, unpin, choose the limit of a data set's pool, or
adopt any Airflow pool.

Runs where ``airflow pools`` runs (it needs Airflow's metadata database).
``pin`` holds the slots until ``unpin`` (the controller enforces it, even outside
the data set's bounds); ``set`` changes them once and the controller adapts
from there (within the bounds); ``limit`` chooses how the controller adapts it
(``gradient`` or ``aimd``; the next ``pools sync`` sets a spec's
``<throttle algorithm=>`` again). Every change is recorded with ``--reason``.
``host show|pin N|set N|unpin`` does the same for the Airflow host's limit
(:mod:`flux_provider.throttle.host`), and ``source show|pin NAME N|set NAME N|unpin NAME``
for a source's budget, shared by its data sets (:mod:`flux_provider.throttle.sources`).

``adopt POOL --min 1 --max 8 --rule 'deadlock: exception=OperationalError'``
makes any pool adaptive, whatever operators run in it
(:mod:`flux_provider.throttle.adopted`); ``release POOL`` gives it back. The
other commands take an adopted pool's name where they take a data set's.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from sqlalchemy import select

from flux_provider.throttle import adopted, host, migrations, source_figures, sources, store
from flux_provider.throttle.controller import set_algorithm, set_limit
from flux_provider.throttle.limits import ALGORITHMS


class Refused(Exception):
    """A command that cannot be done; its message says why and what to do."""


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="python -m flux_provider.throttle", description=__doc__.splitlines()[0])
    sub = out.add_subparsers(dest="command", required=True)
    sub.add_parser("show", help="every data set and adopted pool: pool, slots, pin, bounds, last change")
    why = "why: recorded with the change, which also names you (your login)"
    for name in ("pin", "set"):
        cmd = sub.add_parser(name, help=f"{name} a data set's slots")
        cmd.add_argument("dataset", help="a data set's name, or an adopted pool's")
        cmd.add_argument("slots", type=int, help="the pool's slots")
        cmd.add_argument("--reason", help=why)
    unpin = sub.add_parser("unpin", help="give the data set back to the controller")
    unpin.add_argument("dataset", help="a data set's name, or an adopted pool's")
    unpin.add_argument("--reason", help=why)
    limit = sub.add_parser("limit", help="choose how the controller adapts the data set's pool")
    limit.add_argument("dataset", help="a data set's name, or an adopted pool's")
    limit.add_argument("algorithm", choices=sorted(ALGORITHMS), help="gradient: latency, then errors; aimd: errors")
    limit.add_argument("--reason", help=why)
    adopt = sub.add_parser("adopt", help="make any Airflow pool adaptive (the controller drives its slots)")
    adopt.add_argument("pool", help="an existing Airflow pool")
    adopt.add_argument("--min", type=int, default=1, dest="low", help="the fewest slots the controller sets")
    adopt.add_argument("--max", type=int, required=True, dest="high", help="the most slots the controller sets")
    adopt.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="gradient", help="how it adapts")
    adopt.add_argument("--load-classes", nargs="+", help="error classes that count as load (default: the taxonomy's)")
    adopt.add_argument(
        "--rule",
        action="append",
        default=[],
        help="CLASS: ATTRIBUTE=VALUE ... (a spec's <match> attributes exception, message, number); repeatable",
    )
    adopt.add_argument("--source", help="the source whose budget the pool shares with its data sets")
    adopt.add_argument("--connection", help="the Airflow connection the source's state is read through")
    release = sub.add_parser("release", help="stop adapting an adopted pool (its slots stay)")
    release.add_argument("pool", help="an adopted pool")
    host_cmd = sub.add_parser("host", help="the Airflow host's limit: show, pin N, set N, unpin, adaptive or off")
    host_cmd.add_argument("action", choices=("show", "pin", "set", "unpin", "adaptive", "off"), help="what to do")
    host_cmd.add_argument("slots", type=int, nargs="?", help="tasks at once, for pin and set")
    host_cmd.add_argument("--reason", help=why)
    source_cmd = sub.add_parser("source", help="a source's budget: show [NAME], pin NAME N, set NAME N, unpin NAME")
    source_cmd.add_argument("action", choices=("show", "pin", "set", "unpin"), help="what to do")
    source_cmd.add_argument("name", nargs="?", help="the source (default: its connection's id)")
    source_cmd.add_argument("slots", type=int, nargs="?", help="the budget's tasks at once, for pin and set")
    source_cmd.add_argument("--reason", help=why)
    return out


def show(session) -> str:
    from airflow.models.pool import Pool

    lines = [f"{'DATA SET':<24}{'POOL':<28}{'SLOTS':>6}{'PINNED':>8}{'BOUNDS':>8}  LAST CHANGE"]
    for row in session.execute(select(store.throttle).order_by(store.throttle.c.dataset)).mappings():
        pool = session.execute(select(Pool).where(Pool.pool == row["pool"])).scalar_one_or_none()
        last = store.last_event(session, row["dataset"])
        change = f"{last['at']:%Y-%m-%d %H:%M} {last['reason']}" if last else "-"
        lines.append(
            f"{row['dataset']:<24}{row['pool']:<28}{pool.slots if pool else '-':>6}"
            f"{row['pinned'] if row['pinned'] is not None else '-':>8}"
            f"{row['low']:>4}-{row['high']:<3}  {change}"
        )
    return "\n".join(lines)


def adopt(session, args, actor: str) -> str:
    try:
        done = adopted.adopt(
            session,
            args.pool,
            low=args.low,
            high=args.high,
            algorithm=args.algorithm,
            load_classes=args.load_classes,
            rules=args.rule,
            source=args.source,
            connection=args.connection,
            actor=actor,
        )
    except KeyError:
        raise Refused(f"no pool {args.pool!r} (create it first: airflow pools set ...)") from None
    return (
        f"{args.pool}: adaptive ({done['algorithm']}) within {args.low}-{args.high}, "
        f"{done['previous']} -> {done['slots']} slots, {len(done['rules'])} rule(s)"
        + (f", in source {args.source}'s budget" if args.source else "")
    )


def release(session, args, actor: str) -> str:
    try:
        adopted.release(session, args.pool, actor=actor)
    except KeyError:
        raise Refused(f"pool {args.pool!r} is not adopted") from None
    return f"{args.pool}: released; its slots stay as they are"


def limit(session, args, actor: str) -> str:
    try:
        set_algorithm(session, args.dataset, args.algorithm, actor=actor, reason=args.reason)
    except KeyError:
        raise Refused(unknown(args.dataset)) from None
    return f"{args.dataset}: the controller adapts it with {args.algorithm}"


def change(session, args, actor: str) -> str:
    try:
        result = set_limit(
            session,
            args.dataset,
            None if args.command == "unpin" else args.slots,
            pin=args.command == "pin",
            actor=actor,
            reason=args.reason,
        )
    except KeyError:
        raise Refused(unknown(args.dataset)) from None
    return f"{result['dataset']}: pool {result['pool']} {result['previous']} -> {result['slots']}" + (
        " (pinned)" if result["pinned"] is not None else ""
    )


def host_limit(session, args, actor: str) -> str:
    if args.action == "show":
        shown = host.state(session)
        if shown is None:
            raise Refused("no host limit yet: it appears after the scheduler's first controller period")
        pin = f", pinned to {shown['pinned']}" if shown["pinned"] is not None else ""
        return (
            f"host limit {shown['slots']} (bounds {shown['bounds'][0]}-{shown['bounds'][1]}, {shown['mode']}{pin})\n"
            f"  signals: {shown['signals']}\n  last change: {shown['at']} {shown['reason']}"
        )
    if args.action in host.MODES:
        host.set_mode(session, args.action, actor=actor, reason=args.reason)
        return f"host limit: {args.action}"
    if args.action in ("pin", "set") and args.slots is None:
        raise Refused(f"host {args.action} needs the slots: host {args.action} 4")
    try:
        result = host.set_host_limit(
            session,
            None if args.action == "unpin" else args.slots,
            pin=args.action == "pin",
            actor=actor,
            reason=args.reason,
        )
    except KeyError:
        raise Refused("no host limit yet: it appears after the scheduler's first controller period") from None
    return f"host limit {result['previous']} -> {result['slots']}" + (" (pinned)" if result["pinned"] else "")


def source_budget(session, args, actor: str) -> str:
    if args.action == "show":
        found = source_figures.sources(session, name=args.name, points=0)
        if not found:
            raise Refused(f"no source {args.name!r}" if args.name else "no source yet: `pools sync` registers them")
        return "\n".join(_source_lines(s) for s in found)
    if args.name is None or (args.action != "unpin" and args.slots is None):
        raise Refused(f"source {args.action} needs the source and the budget: source {args.action} NAME 4")
    try:
        result = sources.set_budget(
            session,
            args.name,
            None if args.action == "unpin" else args.slots,
            pin=args.action == "pin",
            actor=actor,
            reason=args.reason,
        )
    except KeyError:
        raise Refused(f"no source {args.name!r} (data sets register theirs at `pools sync`)") from None
    return f"source {args.name}: budget {result['previous']} -> {result['budget']}" + (
        " (pinned)" if result["pinned"] is not None else ""
    )


def _source_lines(found: dict) -> str:
    pin = f", pinned to {found['pinned']}" if found["pinned"] is not None else ""
    lines = [
        f"source {found['source']}: budget {found['budget']} (bounds {found['low']}-{found['high']}{pin}); "
        f"longest query {found['longest_query']:.1f} s, {found['victims']} victims wasted "
        f"{found['wasted_seconds']:.0f} s",
        f"  signal: {found['signal']}",
    ]
    for d in found["datasets"]:
        lines.append(
            f"  {d['dataset']}: pool {d['pool']} {d['slots']} slots (weight {d['weight']:g}, floor {d['floor']}), "
            f"{d['victims']} victims, longest query {d['longest_query'] or 0:.1f} s"
        )
    return "\n".join(lines)


COMMANDS = {
    "host": host_limit,
    "source": source_budget,
    "adopt": adopt,
    "release": release,
    "limit": limit,
    "pin": change,
    "set": change,
    "unpin": change,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from airflow.settings import engine
    from airflow.utils.session import create_session

    migrations.ensure_tables(engine)
    try:
        with create_session() as session:
            if args.command == "show":
                print(show(session))
                return 0
            print(COMMANDS[args.command](session, args, f"cli {getpass.getuser()}"))
    except (Refused, ValueError) as exc:  # create_session rolled back: nothing half-done
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def unknown(dataset: str) -> str:
    return f"no data set {dataset!r} (run `python -m flux_provider.specs pools sync`)"


if __name__ == "__main__":
    sys.exit(main())
