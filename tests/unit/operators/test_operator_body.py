"""A flux operator's body is ``work(context)``; one written against 1.0 that names it ``run`` still runs,
with a DeprecationWarning, and a subclass with neither says what to write."""

from __future__ import annotations

import pytest

from flux_provider.operators.base import FluxOperator


class Current(FluxOperator):
    step = "export"

    def work(self, context):
        return {"body": "work"}


class Old(FluxOperator):
    step = "export"

    def run(self, context):
        return {"body": "run"}


class Empty(FluxOperator):
    step = "export"


def test_work_is_the_body_and_run_still_reaches_it():
    op = Current(task_id="t")
    assert op.work({}) == {"body": "work"} and op.run({}) == {"body": "work"}


def test_a_body_named_run_still_runs_and_is_deprecated():
    with pytest.deprecated_call(match=r"Old.run\(context\) is deprecated: name the step's body work\(context\)"):
        assert Old(task_id="t").work({}) == {"body": "run"}


def test_an_operator_without_a_body_says_what_to_write():
    with pytest.raises(NotImplementedError, match=r"Empty must implement work\(context\)"):
        Empty(task_id="t").work({})
