"""The Pythons with a constraints file, beside the suite's own: the wheel installs with that file into a fresh
venv, imports from there, loads the sample bundle with no import error, and the pure unit tests pass on it
(``make test``: the newest; ``make pythons``: every one).

The interpreters are the machine's (``pythonX.Y`` on PATH, or pyenv's versions); a supported version the
machine lacks is skipped, saying which. No stack."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

OWN = f"{sys.version_info.major}.{sys.version_info.minor}"
OTHERS = sorted(
    (p.stem.removeprefix("constraints-") for p in (REPO / "constraints").glob("constraints-3.*.txt")),
    key=lambda v: tuple(map(int, v.split("."))),
)
# `make test` tries the newest other one (a few minutes each); `make pythons` tries them all
OTHERS = [v for v in OTHERS if v != OWN][
    slice(None) if os.environ.get("FLUX_TEST_PYTHONS") == "all" else slice(-1, None)
]
# the unit tests of the product's pure core and its DAG factory: no dev stack, no Spark, no wheel build
UNIT = ["tests/unit/specs", "tests/unit/formats", "tests/unit/throttle/test_throttle_limits.py"]


def interpreter(version: str) -> str | None:
    """A working ``python<version>`` of this machine, or None."""
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = [shutil.which(f"python{version}"), *sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}"))]
    for candidate in filter(None, found):
        done = subprocess.run([candidate, "-c", "import sys; print(sys.version)"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.startswith(version + "."):
            return candidate
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = out.glob("*.whl")
    return found


@pytest.mark.parametrize("version", OTHERS)
def test_the_wheel_installs_imports_and_passes_the_unit_tests_on(version, wheel, tmp_path):
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine (PATH or pyenv): its constraints file is untested here")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    bin_ = venv / "bin"
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "AIRFLOW_HOME": str(tmp_path / "airflow")}
    env.pop("PYTHONPATH", None)

    def run(*command: str, cwd: Path = tmp_path, timeout: int = 900) -> subprocess.CompletedProcess:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
        return done

    constraints = REPO / "constraints" / f"constraints-{version}.txt"
    run(str(bin_ / "python"), "-m", "pip", "install", "-q", "pip>=25.1")
    run(
        str(bin_ / "pip"),
        "install",
        "-q",
        "-c",
        str(constraints),
        str(wheel),
        "--group",
        f"{REPO / 'pyproject.toml'}:test",
    )
    where = run(str(bin_ / "python"), "-c", "import flux_provider, flux_provider.plugin; print(flux_provider.__file__)")
    assert where.stdout.strip().splitlines()[-1].startswith(str(venv)), where.stdout  # the wheel's, not this checkout's
    checked = run(str(bin_ / "flux-specs"), "check", str(REPO / "dags"))
    assert checked.stdout.splitlines()[-1].startswith("4 valid, 0 invalid"), checked.stdout
    bag = run(
        str(bin_ / "python"),
        "-c",
        "import sys; from airflow.dag_processing.dagbag import DagBag; b = DagBag(dag_folder=sys.argv[1]); "
        "print(' '.join(sorted(b.dags)), '|', len(b.import_errors))",
        str(REPO / "dags"),
    )
    dags, errors = bag.stdout.splitlines()[-1].split(" | ")
    assert errors == "0" and {f"flux_{s.stem}" for s in (REPO / "dags" / "specs").glob("*.xml")} <= set(dags.split())
    # the benchmarks' bundle imports pyspark, from the devstack group this venv leaves out
    pytest_ = [str(bin_ / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not benchmark_bundle"]
    tested = run(*pytest_, *UNIT, cwd=REPO)
    assert " passed" in tested.stdout.splitlines()[-1] and "failed" not in tested.stdout.splitlines()[-1]
