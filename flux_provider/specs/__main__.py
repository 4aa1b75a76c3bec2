"""``flux-specs check|pools PATH...`` (or ``python -m flux_provider.specs``): validate specs, create their pools.

* ``check PATH...``: every spec at the paths (files, or folders searched at any
  depth; XML files whose root element is not ``<dataset>`` are skipped) is
  parsed and validated, then what spans specs: one data set name throughout,
  no ``<after>`` cycle. It prints one line per data set, each error with its
  file, line, element and fix, and warnings (a template that a run without a
  logical date cannot render; a DAG file Airflow's safe mode would skip; a pool
  larger than the executor). ``--format json`` prints one JSON document
  instead, for CI annotations.
* ``plan NAME``: print what the data set's DAG will be, without Airflow: its
  schedule, its Asset and each task with its pool, priority and arguments.
* ``pools sync [--reset] FOLDER...``: create the pools the valid specs name
  (Airflow's metadata database must be reachable, as for ``airflow pools``).

Exit codes of ``check``: 0 every spec is valid (warnings allowed, unless
``--strict``); 1 a spec is invalid (or, with ``--strict``, a warning); 2 there is
nothing to check: a path does not exist, or no spec was found. Results go to
standard output; Airflow's own log lines, if any, go to standard error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

OK, INVALID, NOTHING = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="flux-specs", description=__doc__.splitlines()[0])
    sub = out.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate specs (exit 0 valid, 1 invalid, 2 nothing to check)")
    check.add_argument("paths", nargs="+", metavar="PATH", help="a spec file, or a folder searched at any depth")
    check.add_argument("--strict", action="store_true", help="warnings fail the check too (exit code 1)")
    check.add_argument("--format", choices=["text", "json"], default="text", help="text lines, or one JSON document")
    plan = sub.add_parser("plan", help="print a data set's plan: its schedule, Asset and tasks")
    plan.add_argument("name", metavar="NAME", help="a data set's name (its spec NAME.xml) or a spec file")
    plan.add_argument("--folder", default=".", help="where to look for NAME.xml, at any depth")
    plan.add_argument("--format", choices=["text", "json"], default="text", help="text, or the plan as JSON")
    pools = sub.add_parser("pools", help="create the specs' pools and register their throttle bounds")
    pools.add_argument("action", choices=["sync"], help="sync: create missing pools, refresh descriptions")
    pools.add_argument("folders", nargs="+", metavar="FOLDER", help="a bundle folder (its specs/ or itself)")
    pools.add_argument("--reset", action="store_true", help="set existing pools back to their initial slots")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return {"check": run_check, "plan": run_plan, "pools": run_pools}[args.command](args)


# Airflow logs as it is imported (to standard output, by default): each command keeps that out of its results
def run_check(args) -> int:
    with contextlib.redirect_stdout(sys.stderr):
        from flux_provider.specs.checks import check_paths

        try:
            report = check_paths(args.paths)
        except FileNotFoundError as missing:
            report, gone = None, str(missing.args[0])
    if report is None:
        message = f"{gone}: no such file or folder"
        print(f"flux-specs: {message}", file=sys.stderr)
        if args.format == "json":
            print(json.dumps({"exit_code": NOTHING, "missing": gone, "message": message}, indent=2))
        return NOTHING
    checked = len(report.specs) + len(report.errors)
    code = INVALID if report.errors or (args.strict and report.warnings) else OK
    if not checked:
        code = NOTHING
    if args.format == "json":
        print(json.dumps(as_json(report, code), indent=2))
    else:
        print_text(report)
        if not checked:
            print(f"flux-specs: no spec (an XML file with a <dataset> root) in {' '.join(args.paths)}")
    return code


def run_plan(args) -> int:
    import dataclasses
    from pathlib import Path

    with contextlib.redirect_stdout(sys.stderr):
        from flux_provider.specs.checks import spec_paths
        from flux_provider.specs.parser import SpecError, load_spec
        from flux_provider.specs.plan import plan_for, specs_beside

    path = Path(args.name)
    if not path.is_file():
        found = [p for p in spec_paths(Path(args.folder))[0] if p.stem == args.name]
        if not found:
            print(f"flux-specs: no spec {args.name}.xml under {args.folder}", file=sys.stderr)
            return NOTHING
        path = found[0]
    try:
        spec = load_spec(path, check_queries=False)
        plan = plan_for(spec, specs_beside(spec))
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return INVALID
    if args.format == "json":
        print(json.dumps(dataclasses.asdict(plan), indent=2, default=str))
    else:
        print(plan.text())
    return OK


def run_pools(args) -> int:
    with contextlib.redirect_stdout(sys.stderr):
        from flux_provider.specs.checks import beyond_the_executor
        from flux_provider.specs.factory import load_specs
        from flux_provider.specs.pools import DatabaseNotReady, sync_pools

    specs, errors = [], []
    for folder in args.folders:
        found, failed = load_specs(folder)
        specs += found
        errors += failed
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    for warning in beyond_the_executor(specs):
        print(f"warning: {warning}", file=sys.stderr)
    try:
        synced = sync_pools(specs, reset=args.reset)
    except DatabaseNotReady as exc:
        print(f"error: {exc}", file=sys.stderr)
        return INVALID
    for name, slots, action in synced:
        print(f"{action:<8} pool {name} ({slots} slots)")
    return OK


def print_text(report) -> None:
    for error in report.errors:
        print(f"error: {error}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    for spec in report.specs:
        print(f"ok     {spec.name:<24} {spec.path}")
    print(
        f"{len(report.specs)} valid, {len(report.errors)} invalid, {len(report.warnings)} warnings"
        + (f"; {len(report.skipped)} other XML files skipped" if report.skipped else "")
    )


def as_json(report, code: int) -> dict:
    """The report as one document: ``errors`` and ``warnings`` carry ``path`` and ``line`` for annotations."""
    return {
        "exit_code": code,
        "valid": [{"dataset": s.name, "path": str(s.path)} for s in report.specs],
        "errors": [
            {
                "path": e.path,
                "line": e.line,
                "element": e.element,
                "dataset": e.dataset,
                "message": e.detail,
                "fix": e.fix,
                "text": str(e),
            }
            for e in report.errors
        ],
        "warnings": [
            {"path": w.path, "line": w.line, "element": w.element, "message": w.message, "fix": w.fix, "text": str(w)}
            for w in report.warnings
        ],
        "skipped": [str(p) for p in report.skipped],
    }


if __name__ == "__main__":
    sys.exit(main())
