"""``python -m flux_provider.specs check|pools FOLDER...``: validate specs, create their pools.

* ``check``: parse and validate every spec, then what spans specs (one data set
  name across all folders, no ``<after>`` cycle); prints one line per data set,
  each error with its file, line and fix, and warnings (a template that a run
  without a logical date cannot render; a DAG file Airflow's safe mode would
  skip); exit code 1 if any is broken (or, with ``--strict``, any warning).
* ``pools sync [--reset]``: create the pools the valid specs name (Airflow's
  metadata database must be reachable, as for ``airflow pools``).

Both warn about a data set whose pool may hold more slots than the executor
runs at once (``[core] parallelism``): those slots would never be used.
"""

from __future__ import annotations

import argparse
import sys

from flux_provider.specs.checks import beyond_the_executor, check_folders
from flux_provider.specs.factory import load_specs
from flux_provider.specs.pools import sync_pools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flux_provider.specs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate specs")
    check.add_argument("folders", nargs="+")
    check.add_argument("--strict", action="store_true", help="warnings fail the check too (exit code 1)")
    pools = sub.add_parser("pools", help="create the specs' pools")
    pools.add_argument("action", choices=["sync"])
    pools.add_argument("folders", nargs="+")
    pools.add_argument("--reset", action="store_true", help="set existing pools back to their initial slots")
    args = parser.parse_args(argv)

    if args.command == "check":
        report = check_folders(args.folders)
        for error in report.errors:
            print(f"error: {error}", file=sys.stderr)
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        for spec in report.specs:
            print(f"ok     {spec.name:<24} {spec.path}")
        return 1 if report.errors or (args.strict and report.warnings) else 0

    specs, errors = [], []
    for folder in args.folders:
        found, failed = load_specs(folder)
        specs += found
        errors += failed
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    for warning in beyond_the_executor(specs):
        print(f"warning: {warning}", file=sys.stderr)
    for name, slots, action in sync_pools(specs, reset=args.reset):
        print(f"{action:<8} pool {name} ({slots} slots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
