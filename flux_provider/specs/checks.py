"""What ``specs check`` finds beyond one spec: names across folders, ``<after>`` cycles, templates a
run cannot render, and DAG files Airflow would silently skip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flux_provider.run_day import NEEDS_LOGICAL_DATE, VARIABLE
from flux_provider.specs import after_graph
from flux_provider.specs.factory import load_specs, spec_files
from flux_provider.specs.model import DatasetSpec
from flux_provider.specs.parser import SpecError


@dataclass
class Report:
    specs: list[DatasetSpec] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_folders(folders: list[Path | str]) -> Report:
    report = Report()
    seen: dict[str, DatasetSpec] = {}
    for folder in folders:
        specs, errors = load_specs(folder)
        report.errors += errors
        for spec in specs:
            if spec.name in seen:
                report.errors.append(
                    SpecError(
                        spec.path,
                        f"the data set {spec.name!r} is also declared by {seen[spec.name].path}; pools, "
                        "Assets and DAG ids are global to an Airflow deployment",
                        dataset=spec.name,
                        fix="rename one of the two data sets (and its file), or deploy only one of the folders",
                    )
                )
                continue
            seen[spec.name] = spec
            report.specs.append(spec)
        report.warnings += skipped_dag_files(folder)
    in_cycles: set[str] = set()
    for cycle in after_graph.cycles({s.name: s.schedule.after for s in report.specs}):
        report.errors.append(after_graph.cycle_error(cycle, lambda n: seen[n].path))
        in_cycles.update(cycle)
    report.specs = [s for s in report.specs if s.name not in in_cycles]
    for spec in report.specs:
        report.warnings += undefined_without_logical_date(spec)
    report.warnings += beyond_the_executor(report.specs)
    return report


def executor_slots() -> int:
    """How many tasks one scheduler's executor runs at once (``[core] parallelism``): every pool together
    never runs more, whatever its slots."""
    from airflow.configuration import conf

    return conf.getint("core", "parallelism", fallback=32)


def beyond_the_executor(specs: list[DatasetSpec], slots: int | None = None) -> list[str]:
    """Warnings for data sets whose pool may hold more slots than the executor can ever run at once: the
    slots above it are never used, and nothing else says so."""
    slots = executor_slots() if slots is None else slots
    warnings = []
    for spec in specs:
        t = spec.throttle
        top = max(t.max, t.initial)
        if slots and top > slots:
            warnings.append(
                f"{spec.path}: <throttle>: the data set {spec.name!r} may run {top} tasks at once (max={t.max}, "
                f"initial={t.initial}), but the executor runs at most {slots} ([core] parallelism): slots above "
                f"{slots} are never used. Raise [core] parallelism (and the workers' concurrency) or lower max "
                "(the README's 'Sizing for N data sets')"
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


def undefined_without_logical_date(spec: DatasetSpec) -> list[str]:
    """Warnings for templates that use the logical date in a data set whose runs have none."""
    if spec.schedule.cron:
        return []
    from jinja2 import Environment, TemplateSyntaxError, meta

    how = (
        f"runs after {', '.join(spec.schedule.after)} (Asset-triggered)"
        if spec.schedule.after
        else "has no schedule (manual runs may have no logical date)"
    )
    warnings = []
    for where, text in templated_text(spec).items():
        try:
            names = meta.find_undeclared_variables(Environment().parse(text))
        except TemplateSyntaxError as exc:
            warnings.append(f"{spec.path}: {where}: the template does not parse: {exc}")
            continue
        used = sorted(names & NEEDS_LOGICAL_DATE)
        if used:
            warnings.append(
                f"{spec.path}: {where} uses {', '.join(used)}, but the data set {spec.name!r} {how}: "
                f"its runs have no logical date and the task would fail. Write {{{{ {VARIABLE} }}}} "
                "instead (the day of the run's data, defined for every run)"
            )
    return warnings


def skipped_dag_files(folder: Path | str) -> list[str]:
    """DAG files beside the specs that Airflow's default ``dag_discovery_safe_mode`` never parses."""
    folder = Path(folder)
    specs = spec_files(folder)
    if not specs:
        return []
    dag_folder = specs[0].parent.parent if specs[0].parent.name == "specs" else specs[0].parent
    from airflow.configuration import conf
    from airflow.utils.file import might_contain_dag

    safe_mode = conf.getboolean("core", "dag_discovery_safe_mode", fallback=True)
    warnings = []
    for path in sorted(dag_folder.glob("*.py")):
        if b"flux_provider" in path.read_bytes() and not might_contain_dag(str(path), safe_mode):
            warnings.append(
                f"{path}: Airflow's safe mode (dag_discovery_safe_mode) skips this file without any "
                "import error: it must contain the words 'airflow' and 'dag'. "
                "Write the DAG file as the README shows (from airflow.sdk import DAG ... dag: DAG = "
                "dag_for(__file__))"
            )
    return warnings
