"""Reuse and shutdown of the shared stack. Marked ``lifecycle``: runs after every other test."""

from __future__ import annotations

import psutil
import pytest

from flux_devstack.process import ProcessRecord

pytestmark = [pytest.mark.stack, pytest.mark.lifecycle]


def _stack_pids(stack) -> set[int]:
    """Every live process of the stack: each service's leader and its whole tree."""
    pids = set()
    for raw in stack.load_state()["processes"].values():
        proc = ProcessRecord.from_dict(raw).process()
        if proc is not None:
            pids.add(proc.pid)
            pids.update(child.pid for child in proc.children(recursive=True))
    return pids


def test_second_up_reuses_the_healthy_stack(stack):
    before = stack.load_state()
    messages = []
    again = type(stack)(
        run_dir=stack.run_dir, dags_folder=stack.dags_folder, dag_bundles=stack.dag_bundles, echo=messages.append
    )
    again.up()
    after = again.load_state()
    assert after["processes"] == before["processes"]
    assert after["ports"] == before["ports"]
    assert any("reusing" in m for m in messages)


def test_down_leaves_no_process_behind(stack):
    pids = _stack_pids(stack)
    # s3, metastore, hiveserver2, api-server, scheduler, dag-processor, plus their children.
    assert len(pids) >= 6
    stack.down()
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert all(row.state in ("dead", "not started") for row in stack.status())
