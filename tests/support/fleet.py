"""The stack's ``flux-fleet`` bundle of data sets that tests generate (not tests): one DAG file that builds a DAG
for every spec in its ``specs/`` folder, written before the stack starts so any test can drop specs in."""

from __future__ import annotations

from pathlib import Path

DAG_FILE = '''"""The generated fleet of data sets (tests write specs into specs/): every spec there, one DAG each."""

from pathlib import Path

from airflow.sdk import DAG

from flux_provider.specs.factory import build_dags

dags: dict[str, DAG] = build_dags(Path(__file__).parent / "specs")
globals().update(dags)
'''


def ensure_bundle(folder: Path) -> Path:
    """The bundle folder with its DAG file and an (initially empty) ``specs/``."""
    (folder / "specs").mkdir(parents=True, exist_ok=True)
    (folder / "fleet.py").write_text(DAG_FILE)
    return folder
