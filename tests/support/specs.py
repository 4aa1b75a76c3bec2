"""A minimal valid spec, and writing specs into a folder (shared by the spec tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MINIMAL = """<?xml version="1.0"?>
<dataset name="{name}">
  <owner>team</owner>
  <source schema="dbo" table="events"/>
  <s3 location="s3://flux/events"/>
  <hive database="media" targetTable="events_daily">
    <partition name="day"/>
    <transform>SELECT id, CAST(at AS STRING) AS day FROM {{{{ staging }}}}</transform>
  </hive>
  <schedule><cron>0 3 * * *</cron></schedule>
</dataset>
"""


def write(tmp_path: Path, text: str, name: str = "events") -> Path:
    path = tmp_path / f"{name}.xml"
    path.write_text(text)
    return path


def flux_specs(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The console script as a user's CI runs it (a fresh process: Airflow's own logging included)."""
    script = Path(sys.executable).with_name("flux-specs")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "flux_provider.specs"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def plan_beside(spec):
    """The plan of ``spec``, with the data sets it runs ``<after>`` read from the spec files beside it."""
    from flux_provider.specs.plan import plan_for, specs_beside

    return plan_for(spec, specs_beside(spec))
