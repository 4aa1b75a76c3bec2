"""What ``specs check`` finds beyond one spec: names across folders, ``<after>`` cycles, templates a
run cannot render, and DAG files Airflow would silently skip."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from flux_provider.run_day import NEEDS_LOGICAL_DATE, PARTITION_VARIABLE, VARIABLE
from flux_provider.specs import after_graph
from flux_provider.specs.model import DatasetSpec
from flux_provider.specs.parser import SpecError, element_line, load_spec
from flux_provider.specs.spec_xml import line_finder

_CONF = re.compile(r"\bdag_run\s*\.\s*conf\b|\bdag_run\s*\[\s*['\"]conf")


@dataclass(frozen=True)
class Finding:
    """A warning about a spec or a DAG file: where (file, line, element), what, and what to do."""

    path: str
    message: str
    line: int | None
    element: str | None
    fix: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: " + (f"<{self.element}>: " if self.element else "") + f"{self.message}. Fix: {self.fix}"


@dataclass
class Report:
    specs: list[DatasetSpec] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # XML files under a folder that are not specs


def _root_tag(path: Path) -> str | None:
    """The document element's name, or None when the file does not parse (then it is checked as a spec, and
    the check says why it does not parse)."""
    from lxml import etree

    try:
        for _, element in etree.iterparse(
            str(path), events=("start",), resolve_entities=False, no_network=True, load_dtd=False
        ):
            return etree.QName(element).localname
    except etree.XMLSyntaxError:
        return None
    return None


def spec_paths(path: Path) -> tuple[list[Path], list[Path]]:
    """The specs at ``path`` (a file, or every ``*.xml`` under a folder, at any depth, hidden folders aside)
    and the XML files there that are not specs (their root element is not ``<dataset>``), both sorted."""
    specs, others = [], []
    for found in [path] if path.is_file() else sorted(path.rglob("*.xml")):
        if not found.is_file() or (found != path and any(p.startswith(".") for p in found.relative_to(path).parts)):
            continue
        (specs if _root_tag(found) in ("dataset", None) else others).append(found)
    return specs, others


def check_paths(paths: list[Path | str]) -> Report:
    """Every spec at ``paths`` (files, or folders searched at any depth) as one deployment: each spec
    valid, one data set name throughout, no ``<after>`` cycle, templates every run can render, DAG files
    Airflow parses, pools the executor can fill. A missing path raises FileNotFoundError."""
    report = Report()
    files: list[Path] = []
    for given in map(Path, paths):
        if not given.exists():
            raise FileNotFoundError(given)
        found, others = spec_paths(given)
        files += [f for f in found if f not in files]
        report.skipped += others
    seen: dict[str, DatasetSpec] = {}
    for path in files:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            report.errors.append(exc)
            continue
        if spec.name in seen:
            report.errors.append(
                SpecError(
                    spec.path,
                    f"the data set {spec.name!r} is also declared by {seen[spec.name].path}; pools, "
                    "Assets and DAG ids are global to an Airflow deployment",
                    line=element_line(spec.path, "dataset"),
                    element="dataset name=",
                    dataset=spec.name,
                    fix="rename one of the two data sets (and its file), or deploy only one of the folders",
                )
            )
            continue
        seen[spec.name] = spec
        report.specs.append(spec)
    for folder in sorted({dag_folder_of(p) for p in files}):
        report.warnings += skipped_dag_files(folder)
    in_cycles: set[str] = set()
    for cycle in after_graph.cycles({s.name: s.schedule.after for s in report.specs}):
        report.errors += after_graph.cycle_errors(cycle, lambda n: seen[n].path)
        in_cycles.update(cycle)
    grains = _grains([s for s in report.specs if s.name not in in_cycles], seen, report)
    report.specs = [s for s in report.specs if s.name in grains]
    for spec in report.specs:
        report.warnings += templates_a_run_cannot_render(spec, grains[spec.name])
    report.warnings += beyond_the_executor(report.specs)
    return report


def dag_folder_of(spec: Path) -> Path:
    """Where the DAG files of a spec live: beside its ``specs/`` folder, or beside the spec."""
    return spec.parent.parent if spec.parent.name == "specs" else spec.parent


def executor_slots() -> int:
    """How many tasks one scheduler's executor runs at once (``[core] parallelism``): every pool together
    never runs more, whatever its slots."""
    from airflow.configuration import conf

    return conf.getint("core", "parallelism", fallback=32)


def beyond_the_executor(specs: list[DatasetSpec], slots: int | None = None) -> list[Finding]:
    """Warnings for data sets whose pool may hold more slots than the executor can ever run at once: the
    slots above it are never used, and nothing else says so."""
    slots = executor_slots() if slots is None else slots
    warnings = []
    for spec in specs:
        t = spec.throttle
        top = max(t.max, t.initial)
        if slots and top > slots:
            warnings.append(
                Finding(
                    str(spec.path),
                    f"the data set {spec.name!r} may run {top} tasks at once (max={t.max}, initial={t.initial}), "
                    f"but the executor runs at most {slots} ([core] parallelism): slots above {slots} are never used",
                    line=element_line(spec.path, "throttle"),
                    element="throttle",
                    fix="raise [core] parallelism (and the workers' concurrency) or lower max (the docs' 'Sizing "
                    "for N data sets')",
                )
            )
    return warnings


def templated_text(spec: DatasetSpec) -> list[tuple[str, int | None, str]]:
    """The spec's templated strings: (the element as an error names it, its line, the text)."""

    found = line_finder(spec.path) if spec.path else None

    def line(tag: str, name: str | None = None) -> int | None:
        return found(tag, name=name) if found else None

    texts = [(f'partition name="{p.name}" value=', line("partition", p.name), p.value) for p in spec.hive.partitions]
    texts.append(
        ("transform file=" if spec.hive.transform_file else "transform", line("transform"), spec.hive.transform_sql)
    )
    texts.append(("query", line("query"), spec.source.query))
    texts.append(("countQuery", line("countQuery"), spec.source.count_query))
    return [(where, at, text) for where, at, text in texts if text]


def _grains(specs: list[DatasetSpec], seen: dict[str, DatasetSpec], report: Report) -> dict[str, str | None]:
    """``{name: partition grain (None: not partitioned)}`` of the data sets whose partitions can work with
    those of the data sets they wait for; an error in ``report`` for each of the others."""
    from flux_provider.specs.plan import partitioning

    grains = {}
    for spec in specs:
        try:
            grains[spec.name] = partitioning(spec, seen.get)[0]
        except SpecError as exc:
            report.errors.append(exc)
    return grains


def templates_a_run_cannot_render(spec: DatasetSpec, grain: str | None) -> list[Finding]:
    """Warnings for templates that read what the data set's runs do not have: the logical date (Asset-
    triggered, partitioned or manual runs) or the trigger's conf (partitioned runs)."""
    from jinja2 import Environment, TemplateSyntaxError, meta

    dated = spec.schedule.cron and not spec.schedule.after and grain is None
    how = (
        f"runs after {', '.join(spec.schedule.after)} (Asset-triggered)"
        if spec.schedule.after
        else f"runs per {grain} partition (Airflow's partitioned runs carry a partition key instead)"
        if grain
        else "has no schedule (manual runs may have no logical date)"
    )
    warnings = []
    for where, line, text in templated_text(spec):
        try:
            names = meta.find_undeclared_variables(Environment().parse(text))
        except TemplateSyntaxError as exc:
            fix = "correct the Jinja syntax at the place the message names"
            warnings.append(Finding(str(spec.path), f"the template does not parse: {exc}", line, where, fix))
            continue
        used = sorted(names & NEEDS_LOGICAL_DATE)
        if used and not dated:
            message = f"it uses {', '.join(used)}, but the data set {spec.name!r} {how}: its runs have no logical date"
            fix = f"write {{{{ {VARIABLE} }}}} instead (the day of the run's data, defined for every run)"
            warnings.append(Finding(str(spec.path), message + " and the task would fail", line, where, fix))
        if grain and _CONF.search(text):
            message = (
                f"it reads the trigger's conf, but the data set {spec.name!r} runs per {grain} partition: its "
                "scheduled, backfill and Asset-triggered runs carry a partition key and no conf"
            )
            fix = f"write {{{{ {PARTITION_VARIABLE} }}}} (the run's partition) or {{{{ {VARIABLE} }}}} instead"
            warnings.append(Finding(str(spec.path), message, line, where, fix))
    return warnings


def skipped_dag_files(dag_folder: Path) -> list[Finding]:
    """DAG files in ``dag_folder`` that Airflow's default ``dag_discovery_safe_mode`` never parses."""
    from airflow.configuration import conf
    from airflow.utils.file import might_contain_dag

    safe_mode = conf.getboolean("core", "dag_discovery_safe_mode", fallback=True)
    warnings = []
    for path in sorted(dag_folder.glob("*.py")):
        if b"flux_provider" in path.read_bytes() and not might_contain_dag(str(path), safe_mode):
            warnings.append(
                Finding(
                    str(path),
                    "Airflow's safe mode (dag_discovery_safe_mode) skips this file without any import error: it "
                    "must contain the words 'airflow' and 'dag'",
                    line=None,
                    element=None,
                    fix="write the DAG file as the README shows (from airflow.sdk import DAG ... dag: DAG = "
                    "dag_for(__file__))",
                )
            )
    return warnings
