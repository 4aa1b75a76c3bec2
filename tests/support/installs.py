"""The wheel installed as users install it, into fresh venvs: the quick start as written, and the other Pythons
with their constraints files. Each returns what its commands printed, for its test's assertions
(``tests/integration/test_quickstart.py``, ``test_python_versions.py``); a command that fails raises with its
output. Run early, in the background (:mod:`tests.support.early`)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import REPO
from tests.support.early import folder, niced, wheel

QUICKSTART = REPO / "docs" / "quickstart.md"
CONSTRAINTS_URL = "https://raw.githubusercontent.com/flux-provider/airflow-provider-flux/main/constraints/"
# the unit tests of the product's pure core and its DAG factory: no dev stack, no Spark, no wheel build
UNIT = ["tests/unit/specs", "tests/unit/formats", "tests/unit/throttle/test_throttle_limits.py"]


def steps(text: str) -> list[tuple[str, str, str]]:
    """The quick start's marked blocks: (``install`` | ``file PATH`` | ``run``, argument, the block's text)."""
    found = re.findall(r"<!-- quickstart:(\w+)(?: ([^ ]+))? -->\n```\w+\n(.*?)```", text, re.S)
    return [(kind, arg, body) for kind, arg, body in found]


def _runner(env: dict[str, str], cwd: Path):
    def run(*command: str, timeout: int = 1200) -> str:
        done = subprocess.run(niced(list(command)), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    return run


def quick_start() -> dict[str, str]:
    """The quick start's blocks, run in a fresh folder with a fresh venv: the package from this checkout's wheel,
    the constraints from this checkout (``file://``: the machine has no GitHub). Returns each check's output."""
    work = folder("quickstart")
    venv, user = work / "venv", work / "project"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    user.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(work),
        "AIRFLOW_HOME": str(work / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(user / "dags"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith(("PIP_INDEX", "PIP_EXTRA", "PIP_FIND"))})
    run = _runner(env, user)
    out: dict[str, str] = {"runs": ""}
    for kind, arg, body in steps(QUICKSTART.read_text()):
        if kind == "install":
            local = body.replace(CONSTRAINTS_URL, f"file://{REPO / 'constraints'}/")
            run("bash", "-ec", local.replace("pip install airflow-provider-flux", f"pip install {wheel()}"))
            out["constraints"] = str(user / f"constraints-{sys.version_info.major}.{sys.version_info.minor}.txt")
            run("bash", "-ec", "airflow db migrate")  # the user's Airflow exists already: here, a fresh one
        elif kind == "file":
            (user / arg).parent.mkdir(parents=True, exist_ok=True)
            (user / arg).write_text(body)
        else:
            out["runs"] += run("bash", "-ec", body)
    out["constraints_found"] = str(Path(out["constraints"]).is_file())
    for key, command in {
        "pool": "airflow pools get flux_titles -o json",
        "dag_runs": "airflow dags list-runs flux_titles -o plain",
        "dags": "airflow dags list -o plain",
        "import_errors": "airflow dags list-import-errors -o plain",
        "tasks": "airflow tasks list flux_titles",
        "devstack": "python -c 'import importlib.util as u; print(u.find_spec(\"flux_devstack\"))'",
    }.items():
        out[key] = run("bash", "-ec", command)
    return out


def interpreter(version: str) -> str | None:
    """A working ``python<version>`` of this machine (PATH, or pyenv's versions), or None."""
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = [shutil.which(f"python{version}"), *sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}"))]
    for candidate in filter(None, found):
        done = subprocess.run([candidate, "-c", "import sys; print(sys.version)"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.startswith(version + "."):
            return candidate
    return None


def on_python(version: str) -> dict[str, str]:
    """The wheel with ``constraints-<version>.txt`` in a fresh venv of that Python: where it imports from, the
    spec checker's and a DagBag's view of the sample bundle, and the pure unit tests' summary there."""
    python = interpreter(version)
    assert python, f"no Python {version}"
    work = folder(f"py{version}")
    venv = work / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    bin_ = venv / "bin"
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "AIRFLOW_HOME": str(work / "airflow")}
    env.pop("PYTHONPATH", None)
    run = _runner(env, work)
    constraints = REPO / "constraints" / f"constraints-{version}.txt"
    run(str(bin_ / "python"), "-m", "pip", "install", "-q", "pip>=25.1")
    test_group = f"{REPO}/pyproject.toml:test"
    run(str(bin_ / "pip"), "install", "-q", "-c", str(constraints), str(wheel()), "--group", test_group)
    code = "import sys; from airflow.dag_processing.dagbag import DagBag; b = DagBag(dag_folder=sys.argv[1]); "
    code += "print(' '.join(sorted(b.dags)), '|', len(b.import_errors))"
    # the benchmarks' bundle imports pyspark, from the devstack group this venv leaves out
    pytest_ = [str(bin_ / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not benchmark_bundle"]
    return {
        "venv": str(venv),
        "where": run(str(bin_ / "python"), "-c", "import flux_provider.plugin; print(flux_provider.__file__)"),
        "checked": run(str(bin_ / "flux-specs"), "check", str(REPO / "dags")),
        "bag": run(str(bin_ / "python"), "-c", code, str(REPO / "dags")),
        "tested": _runner(env, REPO)(*pytest_, *UNIT),
    }
