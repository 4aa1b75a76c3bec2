"""The docs' quick start, as a new user runs it: a fresh venv with only the wheel and the constraints, the
quick start's files written into a fresh folder, its commands run there. No stack: the first run needs the
user's own SQL Server, S3 and Hive (the rest of the suite runs the same DAGs on the local stack)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.support import REPO

QUICKSTART = REPO / "docs" / "quickstart.md"
CONSTRAINTS_URL = "https://raw.githubusercontent.com/flux-provider/airflow-provider-flux/main/constraints/"


def steps(text: str) -> list[tuple[str, str, str]]:
    """The marked blocks: (``install`` | ``file PATH`` | ``run``, argument, the block's text)."""
    found = re.findall(r"<!-- quickstart:(\w+)(?: ([^ ]+))? -->\n```\w+\n(.*?)```", text, re.S)
    return [(kind, arg, body) for kind, arg, body in found]


def test_the_quick_start_works_as_written_in_a_fresh_venv(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    user = tmp_path / "project"
    user.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(user / "dags"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith(("PIP_INDEX", "PIP_EXTRA", "PIP_FIND"))})

    def sh(command: str, timeout: int = 600) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["bash", "-ec", command], cwd=user, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    marked = steps(QUICKSTART.read_text())
    assert [k for k, _, _ in marked] == ["install", "file", "file", "run", "run", "run"]
    checked = None
    for kind, arg, body in marked:
        if kind == "install":  # the package from the wheel just built, the constraints from this checkout
            assert CONSTRAINTS_URL in body and 'pip install airflow-provider-flux -c "constraints-' in body
            local = body.replace(CONSTRAINTS_URL, f"file://{REPO / 'constraints'}/")
            sh(local.replace("pip install airflow-provider-flux", f"pip install {wheel}"), timeout=1200)
            assert (user / f"constraints-{sys.version_info.major}.{sys.version_info.minor}.txt").is_file()
            sh("airflow db migrate")  # the user's Airflow exists already: here, a fresh one
        elif kind == "file":
            (user / arg).parent.mkdir(parents=True, exist_ok=True)
            (user / arg).write_text(body)
        else:
            done = sh(body)
            checked = checked or done.stdout
    assert re.search(r"^ok +titles +dags/specs/titles\.xml$", checked, re.M), checked
    assert "flux_titles" in sh("airflow pools get flux_titles -o json").stdout
    runs = sh("airflow dags list-runs flux_titles -o plain").stdout
    assert re.findall(r"^flux_titles\s+\S+\s+(\w+)", runs, re.M) == ["queued"], runs  # the page's trigger's run
    listed = sh("airflow dags list -o plain").stdout
    assert re.findall(r"^(\w+)\s+/", listed, re.M) == ["flux_titles"], listed  # the one DAG, from the wheel
    assert "No data found" in sh("airflow dags list-import-errors -o plain").stdout
    tasks = sh("airflow tasks list flux_titles").stdout.split()
    assert {"export_upload", "transform", "refresh"} <= set(tasks), tasks
    imported = sh("python -c 'import importlib.util as u; print(u.find_spec(\"flux_devstack\"))'").stdout
    assert imported.strip() == "None"  # the dev stack is not in the package
