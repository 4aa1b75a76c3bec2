"""The wheel and the sdist as a package index and ``pip install`` see them: only the product ships, with
the metadata an Apache provider has. Builds both with ``python -m build`` (in its own isolated build
environment, as a release would) once for the module."""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import flux_provider
from tests.support import REPO


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_the_wheel_holds_the_product_and_not_the_dev_stack(dist):
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    packages = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert packages == {"flux_provider"}, packages  # no flux_devstack, tests or benchmarks
    assert not [n for n in names if re.search(r"devstack|tds|sample_data|seed", n)]
    for shipped in (
        "flux_provider/specs/dataset.xsd",
        "flux_provider/dashboard/dashboard.html",
        "flux_provider/dashboard/static/uPlot.iife.min.js",
        "flux_provider/dashboard/static/uPlot.LICENSE",
        "flux_provider/py.typed",
    ):
        assert shipped in names, shipped
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_metadata_says_what_an_apache_provider_says(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        meta_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(wheel.read(meta_name))
        entry_points = wheel.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert meta["Version"] == flux_provider.__version__ != "0.1.0"
    assert meta["License-Expression"] == "Apache-2.0"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Documentation", "Source", "Changelog"} <= set(urls)
    classifiers = meta.get_all("Classifier")
    assert "Framework :: Apache Airflow :: Provider" in classifiers
    tested = {Path(p).stem.removeprefix("constraints-") for p in (REPO / "constraints").glob("constraints-*.txt")}
    assert {
        c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    } == tested
    oldest = min(tested, key=lambda v: tuple(map(int, v.split("."))))
    assert meta["Requires-Python"] == f">={oldest}"  # no cap: Airflow's own Requires-Python decides above
    assert not [n for n in meta.get_all("Provides-Extra") or [] if n != "openlineage"]  # the dev tools are groups
    assert "flux-specs = flux_provider.specs.__main__:main" in entry_points
    assert "provider_info = flux_provider:get_provider_info" in entry_points
    assert "flux = flux_provider.plugin:FluxPlugin" in entry_points


def test_the_sdist_has_the_license_and_the_changelog(dist):
    with tarfile.open(dist["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"LICENSE", "CHANGELOG.md", "pyproject.toml", "flux_provider/specs/dataset.xsd"} <= names


def test_twine_check_strict_passes(dist):
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]), str(dist["sdist"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_shows_on_a_package_index_page():
    """An index renders the README away from the repository: its images and links must be absolute."""
    readme = (REPO / "README.md").read_text()
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)", readme) + re.findall(r'<img [^>]*src="([^"]+)"', readme):
        assert re.match(r"https://|#", target), target
    assert len(readme.splitlines()) <= 200


def test_a_build_from_main_is_a_dev_version_until_a_release():
    """A changelog with unreleased changes means the code is past the last release: its version says so."""
    from packaging.version import Version

    changelog = (REPO / "CHANGELOG.md").read_text()
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", changelog, re.M)
    unreleased = changelog.split("## [Unreleased]", 1)[1].split("\n## [", 1)[0]
    version = Version(flux_provider.__version__)
    if unreleased.strip():
        assert version.is_devrelease and version > Version(released[0]), version
    else:
        assert str(version) == released[0]
