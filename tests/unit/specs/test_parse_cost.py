"""A DAG file is cheap to parse: building a sample data set's DAG imports no heavy library.

Airflow's DAG processor parses every file again every 30 s, each in a fresh process that has imported only
Airflow: whatever a DAG file imports besides is paid on every file at every parse. Each check runs in a fresh
interpreter, as the processor does, so nothing an earlier test imported hides a regression."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO

#: Imported where the work happens (behind an operator's execute), never when a DAG is built.
HEAVY = ("pyarrow", "numpy", "pandas", "sqlglot", "boto3", "botocore", "s3transfer", "pymssql", "pyhive")

PROBE = """
import json, runpy, sys
import airflow.sdk
before = set(sys.modules)
namespace = runpy.run_path(sys.argv[1])
dags = [v for v in namespace.values() if type(v).__name__ == "DAG"]
loaded = {m.split(".")[0] for m in set(sys.modules) - before}
tasks = sum(len(d.tasks) for d in dags)
print(json.dumps({"dags": [d.dag_id for d in dags], "tasks": tasks, "loaded": sorted(loaded)}))
"""

SAMPLE_DAGS = sorted(
    p.name for p in (REPO / "dags").glob("*.py") if (REPO / "dags" / "specs" / f"{p.stem}.xml").exists()
)


def build_in_fresh_process(dag_file, tmp_path) -> dict:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(dag_file)], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_sample_data_set_has_a_dag_file():
    specs = sorted(p.stem for p in (REPO / "dags" / "specs").glob("*.xml"))
    assert len(specs) >= 4 and [name.removesuffix(".py") for name in SAMPLE_DAGS] == specs, (specs, SAMPLE_DAGS)


@pytest.mark.parametrize("name", SAMPLE_DAGS)
def test_building_a_sample_dag_imports_nothing_heavy(name, tmp_path):
    result = build_in_fresh_process(REPO / "dags" / name, tmp_path)
    assert result["dags"] == [f"flux_{name.removesuffix('.py')}"] and result["tasks"] >= 3, result
    assert not set(result["loaded"]) & set(HEAVY), f"{name} imports {sorted(set(result['loaded']) & set(HEAVY))}"


def test_the_probe_sees_a_heavy_import(tmp_path):
    """The check can fail: a DAG file that imports pyarrow is caught."""
    dag_file = tmp_path / "heavy_dag.py"
    dag_file.write_text(
        "import pyarrow\nfrom airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import "
        "EmptyOperator\nwith DAG('heavy', schedule=None) as dag:\n    EmptyOperator(task_id='t')\n"
    )
    assert "pyarrow" in build_in_fresh_process(dag_file, tmp_path)["loaded"]
