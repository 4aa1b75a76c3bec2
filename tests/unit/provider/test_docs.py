"""The documentation site's parts that can rot: the generated references, the operators' examples, the
pages that must exist. ``make docs`` builds it with warnings as errors (in CI)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from lxml import etree

from tests.support import REPO

DOCS = REPO / "docs"
XS = "{http://www.w3.org/2001/XMLSchema}"


def test_the_references_are_what_the_xsd_and_the_options_say():
    done = subprocess.run([sys.executable, str(DOCS / "reference.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def xsd_paths() -> dict[str, etree._Element]:
    """Every element (``source/split``) and attribute (``source/split@parts``) of dataset.xsd."""
    root = etree.parse(str(REPO / "flux_provider" / "specs" / "dataset.xsd")).getroot()

    def path_of(node) -> str:
        names = [a.get("name") for a in node.iterancestors(f"{XS}element")][::-1]
        return " / ".join(names)

    paths = {}
    for element in root.iter(f"{XS}element"):
        paths[" / ".join(filter(None, [path_of(element), element.get("name")]))] = element
    for attribute in root.iter(f"{XS}attribute"):
        paths[f"{path_of(attribute)}@{attribute.get('name')}"] = attribute
    return paths


def test_every_element_and_attribute_of_the_xsd_is_documented_and_in_the_reference():
    reference = (DOCS / "reference" / "spec.md").read_text()
    sections = dict(re.findall(r"^## `([^`]+)`\n(.*?)(?=^## |\Z)", reference, re.M | re.S))
    for path, node in xsd_paths().items():
        text = node.findtext(f"{XS}annotation/{XS}documentation")
        assert text and len(text.split()) >= 2, f"{path} has no xs:documentation"
        element, _, attribute = path.partition("@")
        assert element in sections, f"{element} is not in docs/reference/spec.md"
        if attribute:
            assert f"| `{attribute}` |" in sections[element], f"{path} is not in the reference"


def public_classes(package: str, suffix: str) -> dict[str, str]:
    """``{class: module name}`` of every public ``*<suffix>`` class defined in ``flux_provider.<package>``."""
    import importlib
    import inspect

    found = {}
    for path in sorted((REPO / "flux_provider" / package).glob("[!_]*.py")):
        module = importlib.import_module(f"flux_provider.{package}.{path.stem}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if name.endswith(suffix) and not name.startswith("_") and cls.__module__ == module.__name__:
                found[name] = path.stem
    return found


def test_the_operators_examples_parse_and_every_operator_page_includes_one():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DOCS / "examples"))
    assert bag.import_errors == {}
    assert set(bag.dags) == {"example_flux_chain", "example_flux_streamed", "example_flux_split"}
    example = (DOCS / "examples" / "example_flux_operators.py").read_text()
    operators = {
        name: module for name, module in public_classes("operators", "Operator").items() if name != "FluxOperator"
    }
    assert len(operators) >= 7, operators
    for operator, page in operators.items():
        text = (DOCS / "operators" / f"{page}.md").read_text()
        marker = re.search(r':start-after: "\[START (\w+)\]"', text)
        assert marker, f"docs/operators/{page}.md includes no example"
        start, end = f"# [START {marker.group(1)}]", f"# [END {marker.group(1)}]"
        assert start in example and end in example
        assert f"{operator}(" in example[example.index(start) : example.index(end)]
        assert re.search(rf"^operators/{page}$", (DOCS / "index.md").read_text(), re.M), f"index.md lists no {page}"


def test_the_api_reference_has_every_public_operator_and_hook_and_the_hooks_page_each_hook():
    api = (DOCS / "reference" / "api.md").read_text()
    hooks_page = (DOCS / "hooks" / "index.md").read_text()
    for name, module in {**public_classes("operators", "Operator"), **public_classes("hooks", "Hook")}.items():
        package = "hooks" if name.endswith("Hook") else "operators"
        assert f"autoclass:: flux_provider.{package}.{module}.{name}" in api, f"{name} is not in reference/api.md"
        if package == "hooks":
            assert f"flux_provider.{package}.{module}.{name}`" in hooks_page, f"{name} is not on hooks/index.md"


def test_the_requirements_table_says_what_pyproject_requires():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    table = (DOCS / "index.md").read_text().split("## Requirements", 1)[1].split("\n\n", 2)[1]
    rows = {r.split("|")[1].strip(): r.split("|")[2].strip() for r in table.splitlines()[2:]}
    assert rows["Python"] == project["requires-python"].removeprefix(">=")
    optional = [d for group in project["optional-dependencies"].values() for d in group]
    for requirement in [*project["dependencies"], *optional]:
        name, low = re.match(r"([\w-]+)>=([\d.]+)", requirement).groups()
        row = next((k for k in rows if k.split(" (")[0] == name or name in k.split(", ")), None)
        assert row, f"{name} is not in the requirements table"
        names, lows = row.split(" (")[0].split(", "), rows[row].split(", ")
        assert lows[names.index(name)] == low, f"{name}: the table says {lows[names.index(name)]}, pyproject {low}"


@pytest.mark.parametrize(
    "page",
    [
        "quickstart",
        "connections/mssql",
        "connections/aws",
        "connections/hiveserver2",
        "connections/metastore",
        "reference/spec",
        "reference/api",
        "reference/cli",
        "reference/configuration",
        "hooks/index",
        "security",
        "checking",
        "throttling",
        "recovery",
        "calendars",
        "deadlines",
        "lineage",
        "deployment",
        "sizing",
        "troubleshooting",
        "benchmarks",
        "changelog",
        "contributing",
    ],
)
def test_the_site_has_the_page_and_links_it(page):
    assert (DOCS / f"{page}.md").exists()
    assert re.search(rf"^{re.escape(page)}$", (DOCS / "index.md").read_text(), re.M), f"index.md lists no {page}"
