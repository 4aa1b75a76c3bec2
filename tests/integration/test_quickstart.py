"""The docs' quick start, as a new user runs it: a fresh venv with only the wheel and the constraints, the
quick start's files written into a fresh folder, its commands run there. No stack: the first run needs the
user's own SQL Server, S3 and Hive (the rest of the suite runs the same DAGs on the local stack). The commands
run early, in the background (``tests/support/early.py``); this test checks what they printed."""

from __future__ import annotations

import re

from tests.support import early, installs


def test_the_quick_start_works_as_written_in_a_fresh_venv():
    marked = installs.steps(installs.QUICKSTART.read_text())
    assert [k for k, _, _ in marked] == ["install", "file", "file", "run", "run", "run"]
    (install,) = [body for kind, _, body in marked if kind == "install"]
    assert installs.CONSTRAINTS_URL in install and 'pip install airflow-provider-flux -c "constraints-' in install
    out = early.result("quickstart", installs.quick_start)
    assert out["constraints_found"] == "True"  # the install block fetched the running Python's constraints
    assert re.search(r"^ok +titles +dags/specs/titles\.xml$", out["runs"], re.M), out["runs"]
    assert "flux_titles" in out["pool"]
    runs = re.findall(r"^flux_titles\s+\S+\s+(\w+)", out["dag_runs"], re.M)
    assert runs == ["queued"], out["dag_runs"]  # the page's trigger's run
    assert re.findall(r"^(\w+)\s+/", out["dags"], re.M) == ["flux_titles"], out["dags"]  # the one DAG, from the wheel
    assert "No data found" in out["import_errors"]
    assert {"export_upload", "transform", "refresh"} <= set(out["tasks"].split()), out["tasks"]
    assert out["devstack"].strip() == "None"  # the dev stack is not in the package
