"""Every product module is imported by a unit test, or listed here with where its code is exercised: a module
reached only through another one, or one whose behaviour is I/O that only the stack tests can show. A new
module that no unit test imports fails until it has one or a line here; a listed module that a unit test now
imports fails until its line goes."""

from __future__ import annotations

import ast
from pathlib import Path

import flux_provider
from tests.support import REPO

THROUGH = {
    "flux_provider.config": "its options: tests/unit/provider/test_provider_registration.py (airflow config list)",
    "flux_provider.hooks.dbapi_export": "fetches from a DB-API server: tests/integration/test_bcp_export.py",
    "flux_provider.hooks.hive_staging": "Hive DDL on Spark Thrift Server: tests/integration/test_hive_transform.py",
    "flux_provider.hooks.run_integrity": "S3 listings of a published run: tests/integration/test_s3_chunk_upload.py",
    "flux_provider.hooks.run_store": "S3 conditional writes: tests/integration/test_s3_chunk_upload.py, test_splits.py",
    "flux_provider.hooks.split_publish": "a split run's manifest in S3: tests/integration/test_splits.py",
    "flux_provider.operators.publish_run": "a split's publish on the stack: tests/integration/test_splits.py",
    "flux_provider.operators.split_plan": "a split's plan on the stack: tests/integration/test_splits.py",
    "flux_provider.plugin": "loaded by airflow plugins: tests/unit/provider/test_provider_registration.py",
    "flux_provider.specs.after_graph": "through specs check: tests/unit/specs/test_checker.py",
    "flux_provider.specs.checks": "through specs check: tests/unit/specs/test_checker.py",
    "flux_provider.specs.dag_doc": "through render (a DAG's doc_md): tests/unit/specs/test_specs.py",
    "flux_provider.specs.partitions": "through plan and render: tests/unit/specs/test_plan.py",
    "flux_provider.specs.pools": "through specs pools sync: tests/unit/specs/test_checker.py",
    "flux_provider.specs.read_hive": "through specs.parser.load_spec: tests/unit/specs/",
    "flux_provider.specs.read_schedule": "through specs.parser.load_spec: tests/unit/specs/",
    "flux_provider.specs.read_source": "through specs.parser.load_spec: tests/unit/specs/",
    "flux_provider.specs.schema_errors": "through specs.parser.load_spec: tests/unit/specs/test_specs.py",
    "flux_provider.specs.spec_reader": "through specs.parser.load_spec: tests/unit/specs/",
    "flux_provider.throttle.__main__": "the throttle CLI on the stack: tests/integration/test_throttle_airflow.py",
    "flux_provider.dashboard.health": "through throttle.overview: tests/unit/throttle/test_dashboard_files.py",
    "flux_provider.dashboard.links": "through throttle.overview: tests/unit/throttle/test_dashboard_files.py",
    "flux_provider.throttle.source_figures": "through throttle.api: tests/integration/test_source_budget.py",
    "flux_provider.throttle.tries": "through throttle.observations: tests/unit/throttle/test_controller_sql.py",
}


def product_modules() -> set[str]:
    root = Path(flux_provider.__file__).parent
    return {
        ".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__") for p in root.rglob("*.py")
    }


def imported_by_unit_tests(modules: set[str]) -> set[str]:
    found = set()
    for path in (REPO / "tests" / "unit").rglob("*.py"):
        if path.resolve() == Path(__file__).resolve():
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        found |= {m for m in modules if f'"{m}"' in text}  # run as python -m, or imported by name
    return found & modules


def test_every_module_is_imported_by_a_unit_test_or_says_where_it_is_exercised():
    modules = product_modules()
    direct = imported_by_unit_tests(modules)
    assert modules - direct - set(THROUGH) == set(), "import these in a unit test, or add them to THROUGH"
    assert set(THROUGH) & direct == set(), "a unit test imports these now: take them off THROUGH"
    assert set(THROUGH) <= modules, "THROUGH names modules that are gone"
