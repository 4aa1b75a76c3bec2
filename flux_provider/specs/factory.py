"""Data-set specs -> Airflow DAGs: one DAG per data set, export -> upload -> transform -> refresh.

Two ways to load a folder of specs (``<folder>/specs/*.xml``) in a DAG bundle:

* **one small DAG file per data set** (what the sample bundle does)::

      # dags/titles.py: the data set of specs/titles.xml
      from airflow.sdk import DAG
      from flux_provider.specs.factory import dag_for

      dag: DAG = dag_for(__file__)

  Airflow's default ``dag_discovery_safe_mode`` parses only files whose text
  contains both "airflow" and "dag": the import and the annotation make sure of
  it whatever the comments say (``specs check`` reports files it would skip).

  A broken spec is then an Airflow import error of that file only, with the
  spec's file, line and fix in the message; every other data set loads.
* **one DAG file for the whole folder**: ``globals().update(build_dags(folder))``.
  Broken specs are skipped and logged (``strict=True`` raises instead, which
  takes the whole file down).

Each spec becomes a plan (:mod:`flux_provider.specs.plan`), rendered as a DAG
(:mod:`flux_provider.specs.render`). Every task runs in the data set's pool (create pools before the DAGs run:
``python -m flux_provider.specs pools sync <folder>``; the local stack does it
at start-up). The refresh (or transform) task updates the Asset
``flux.<data set>`` so other data sets can run ``<after>`` it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flux_provider.specs import after_graph
from flux_provider.specs.model import DatasetSpec
from flux_provider.specs.parser import SpecError, load_spec, parse_xml
from flux_provider.specs.plan import plan_for, specs_beside
from flux_provider.specs.render import render

log = logging.getLogger(__name__)


def spec_files(folder: Path | str) -> list[Path]:
    folder = Path(folder)
    specs = folder / "specs" if (folder / "specs").is_dir() else folder
    return sorted(specs.glob("*.xml"))


def load_specs(folder: Path | str, *, check_queries: bool = True) -> tuple[list[DatasetSpec], list[SpecError]]:
    """Every spec of ``folder`` that loads, and the errors of those that do not (names are unique: a
    spec's file is named after its data set)."""
    specs, errors = [], []
    for path in spec_files(folder):
        try:
            specs.append(load_spec(path, check_queries=check_queries))
        except SpecError as exc:
            errors.append(exc)
    return specs, errors


def check_after(spec: DatasetSpec, known: set[str] | None) -> None:
    """Every data set ``<after>`` names has a spec (``known``: the names there are; None: unchecked)."""
    missing = [a for a in spec.schedule.after if known is not None and a not in known]
    if missing:
        raise SpecError(
            spec.path,
            f"<after> names data sets that have no spec here: {missing}",
            element="schedule",
            dataset=spec.name,
            fix=f"one of {sorted(known or [])}, or a cron/preset schedule",
        )


def build_dag(spec: DatasetSpec, *, known: set[str] | None = None, priorities: bool = True, load=None):
    """The DAG of one data set: its plan, rendered (``priorities=False``: Airflow's default weight rule
    instead of the fleet's stage priorities, :mod:`flux_provider.specs.priorities`). ``load(name)`` gives the
    spec of a data set it runs ``<after>`` (default: read from the spec files beside it)."""
    check_after(spec, known)
    return render(plan_for(spec, load or specs_beside(spec)), priorities=priorities)


def build_dags(folder: Path | str, *, strict: bool = False, priorities: bool = True) -> dict[str, object]:
    """``{dag_id: DAG}`` for every spec of ``folder``; broken specs are logged and skipped (or raised).
    ``priorities=False`` keeps Airflow's default weight rule (see :func:`build_dag`)."""
    specs, errors = load_specs(folder, check_queries=False)  # checked by `specs check` and before each export
    for error in errors:
        if strict:
            raise error
        log.error("skipping a data set: %s", error)
    known = {p.stem for p in spec_files(folder)}  # a broken spec is still a data set others may wait for
    by_name = {s.name: s for s in specs}
    for cycle in after_graph.cycles({s.name: s.schedule.after for s in specs}):
        error = after_graph.cycle_errors(cycle, lambda n: by_name[n].path)[0]
        if strict:
            raise error
        log.error("skipping data sets %s: %s", sorted(set(cycle)), error)
        specs = [s for s in specs if s.name not in cycle]
    dags = {}
    for spec in specs:
        try:
            dags[spec.dag_id] = build_dag(spec, known=known, priorities=priorities, load=by_name.get)
        except SpecError as exc:
            if strict:
                raise
            log.error("skipping a data set: %s", exc)
    return dags


def dag_for(dag_file: str | Path, spec_name: str | None = None):
    """The DAG of ``specs/<name>.xml`` next to ``dag_file`` (name: the DAG file's own name by default).

    Raises :class:`~flux_provider.specs.spec_error.SpecError` for a broken spec: Airflow shows it as that
    DAG file's import error.
    """
    dag_file = Path(dag_file)
    folder = dag_file.parent / "specs"
    path = folder / f"{spec_name or dag_file.stem}.xml"
    if not path.is_file():
        raise SpecError(path, "no such spec", fix=f"create {path.name} or pass spec_name= to dag_for")
    spec = load_spec(path, check_queries=False)  # checked by `specs check` and before each export
    # the data sets it waits for exist: one look per name (the folder is listed only to name the choices)
    after = spec.schedule.after
    found = all((folder / f"{name}.xml").is_file() for name in after)
    known = {spec.name, *after} if found else {p.stem for p in spec_files(folder)}
    cycle = after_graph.cycle_through(spec.name, _after_reader(folder))
    if cycle:
        raise after_graph.cycle_errors(cycle, lambda n: folder / f"{n}.xml")[0]
    return build_dag(spec, known=known)


def _after_reader(folder: Path):
    """``name -> the data sets it waits for``, reading only the ``<after>`` of the specs asked about."""

    def after_of(name: str) -> tuple[str, ...]:
        try:
            root = parse_xml(folder / f"{name}.xml").getroot()
        except (SpecError, OSError):
            return ()  # a missing or broken spec reports itself
        return tuple(e.text.strip() for e in root.iter("after") if e.text and e.text.strip())

    return after_of
