"""The stacks of this tier claim their ports in a registry of the test's own, not the machine's."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def port_claims(tmp_path, monkeypatch):
    monkeypatch.setenv("FLUX_DEVSTACK_PORTS", str(tmp_path / "port-claims"))
