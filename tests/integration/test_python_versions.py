"""The Pythons with a constraints file, beside the suite's own: the wheel installs with that file into a fresh
venv, imports from there, loads the sample bundle with no import error, and the pure unit tests pass on it
(``make test``: the newest; ``make pythons``: every one). The install runs early, in the background
(``tests/support/early.py``); this test checks what it printed.

The interpreters are the machine's (``pythonX.Y`` on PATH, or pyenv's versions); a supported version the
machine lacks is skipped, saying which. No stack."""

from __future__ import annotations

import functools
import sys

import pytest

from tests.support import REPO, early, installs

OWN = f"{sys.version_info.major}.{sys.version_info.minor}"


def others(every: bool) -> list[str]:
    """The other versions with a constraints file: the newest (``make test``), or all (``make pythons``)."""
    found = sorted(
        (p.stem.removeprefix("constraints-") for p in (REPO / "constraints").glob("constraints-3.*.txt")),
        key=lambda v: tuple(map(int, v.split("."))),
    )
    found = [v for v in found if v != OWN]
    return found if every else found[-1:]


OTHERS = others(__import__("os").environ.get("FLUX_TEST_PYTHONS") == "all")


@pytest.mark.parametrize("version", OTHERS)
def test_the_wheel_installs_imports_and_passes_the_unit_tests_on(version):
    if installs.interpreter(version) is None:
        pytest.skip(f"no Python {version} on this machine (PATH or pyenv): its constraints file is untested here")
    out = early.result(f"python-{version}", functools.partial(installs.on_python, version))
    where = out["where"].strip().splitlines()[-1]
    assert where.startswith(out["venv"]), out["where"]  # the wheel's, not this checkout's
    assert out["checked"].splitlines()[-1].startswith("4 valid, 0 invalid"), out["checked"]
    dags, errors = out["bag"].splitlines()[-1].split(" | ")
    assert errors == "0" and {f"flux_{s.stem}" for s in (REPO / "dags" / "specs").glob("*.xml")} <= set(dags.split())
    summary = out["tested"].splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, out["tested"][-3000:]
