"""Fixtures shared by the stack tests' modules."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tests.support import RUN_DIR


@dataclass(frozen=True)
class SampleRun:
    """One run of the sample bundle through the demo's own code path, and the OpenLineage events its tasks
    reported (the stack's file transport, from where it stood before the run)."""

    outcomes: list
    events: list[dict]


@pytest.fixture(scope="session")
def sample_run(stack) -> SampleRun:
    """The sample bundle run once for the tests that check its loads (test_specs) and its lineage
    (test_lineage): each run of it costs a few minutes of the suite."""
    from flux_devstack.demo import run_demo

    path = RUN_DIR / "openlineage" / "events.jsonl"
    start = path.stat().st_size if path.exists() else 0
    outcomes = run_demo(stack.env(), rows=1500)
    with path.open("rb") as f:
        f.seek(start)
        events = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
    return SampleRun(outcomes, events)
