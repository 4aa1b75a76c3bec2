"""What ``specs check`` finds beyond one spec: names across folders, ``<after>`` cycles, templates a
run cannot render, and DAG files Airflow would silently skip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flux_provider.run_day import NEEDS_LOGICAL_DATE, VARIABLE
from flux_provider.specs import after_graph
from flux_provider.specs.model import DatasetSpec
from flux_provider.specs.parser import SpecError, element_line, load_spec


@dataclass(frozen=True)
class Finding:
    """A warning about a spec or a DAG file: where, and what to do."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


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
        report.errors.append(after_graph.cycle_error(cycle, lambda n: seen[n].path))
        in_cycles.update(cycle)
    report.specs = [s for s in report.specs if s.name not in in_cycles and _partitions_work(s, seen, report)]
    for spec in report.specs:
        report.warnings += undefined_without_logical_date(spec)
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
                    f"<throttle>: the data set {spec.name!r} may run {top} tasks at once (max={t.max}, "
                    f"initial={t.initial}), but the executor runs at most {slots} ([core] parallelism): slots above "
                    f"{slots} are never used. Raise [core] parallelism (and the workers' concurrency) or lower max "
                    "(the docs' 'Sizing for N data sets')",
                    line=element_line(spec.path, "throttle"),
                )
            )
    return warnings


def templated_text(spec: DatasetSpec) -> dict[str, str]:
    """The spec's templated strings, by where they are."""
    texts = {f"<partition name={p.name!r} value=>": p.value for p in spec.hive.partitions if p.value}
    texts[f"<transform{' file=' + spec.hive.transform_file.name if spec.hive.transform_file else ''}>"] = (
        spec.hive.transform_sql
    )
    if spec.source.query:
        texts["<query>"] = spec.source.query
    if spec.source.count_query:
        texts["<countQuery>"] = spec.source.count_query
    return texts


def _partitions_work(spec: DatasetSpec, seen: dict[str, DatasetSpec], report: Report) -> bool:
    """The data set's partitions can work with those of the data sets it waits for; else an error."""
    from flux_provider.specs.plan import partitioning

    try:
        partitioning(spec, seen.get)
    except SpecError as exc:
        report.errors.append(exc)
        return False
    return True


def undefined_without_logical_date(spec: DatasetSpec) -> list[Finding]:
    """Warnings for templates that use the logical date in a data set whose runs have none (its partitions
    checked first: :func:`_partitions_work`)."""
    from flux_provider.specs.partitions import own_grain

    if spec.schedule.cron and own_grain(spec) is None:
        return []
    from jinja2 import Environment, TemplateSyntaxError, meta

    how = (
        f"runs after {', '.join(spec.schedule.after)} (Asset-triggered)"
        if spec.schedule.after
        else "runs per day or hour partition (Airflow's partitioned runs carry a partition key instead)"
        if spec.schedule.cron
        else "has no schedule (manual runs may have no logical date)"
    )
    warnings = []
    for where, text in templated_text(spec).items():
        try:
            names = meta.find_undeclared_variables(Environment().parse(text))
        except TemplateSyntaxError as exc:
            warnings.append(Finding(str(spec.path), f"{where}: the template does not parse: {exc}"))
            continue
        used = sorted(names & NEEDS_LOGICAL_DATE)
        if used:
            warnings.append(
                Finding(
                    str(spec.path),
                    f"{where} uses {', '.join(used)}, but the data set {spec.name!r} {how}: "
                    f"its runs have no logical date and the task would fail. Write {{{{ {VARIABLE} }}}} "
                    "instead (the day of the run's data, defined for every run)",
                )
            )
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
                    "Airflow's safe mode (dag_discovery_safe_mode) skips this file without any "
                    "import error: it must contain the words 'airflow' and 'dag'. "
                    "Write the DAG file as the README shows (from airflow.sdk import DAG ... dag: DAG = "
                    "dag_for(__file__))",
                )
            )
    return warnings
