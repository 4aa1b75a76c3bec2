"""Sphinx configuration of the flux_provider docs (``make docs``: warnings are errors, links are checked)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flux_provider  # noqa: E402

project = "airflow-provider-flux"
author = "The flux_provider developers"
copyright = "2026, The flux_provider developers"  # noqa: A001 - Sphinx's name
release = version = flux_provider.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "examples", "reference.py", "conf.py"]
nitpicky = True
suppress_warnings: list[str] = []
# the API reference (reference/api.md): parameters with their types, from the signatures
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
# types of Airflow, the standard library's typing and the providers' clients are not in these docs
nitpick_ignore_regex = [
    ("py:(class|obj|exc|data)", r"(airflow|sqlalchemy|pendulum|botocore|boto3|mypy_boto3_s3|pyarrow|pymssql|lxml)\..*"),
    ("py:(class|obj|data)", r"(typing|collections\.abc|datetime|pathlib|subprocess|threading|enum|abc|random)\..*"),
    ("py:class", r"Path|'.*|flux_provider\..*\._\w+|flux_provider\.records\.R"),  # string and private annotations
    ("py:mod", r"flux_provider\..*"),  # modules are described in prose pages, not in the API reference
]
html_theme = "alabaster"
html_title = f"airflow-provider-flux {release}"
html_static_path: list[str] = []
html_theme_options = {"description": "SQL Server -> S3 -> Hive for Airflow 3", "fixed_sidebar": True}
linkcheck_ignore = [r"https?://.*"]  # CI has no outside network promise: internal links and anchors only
