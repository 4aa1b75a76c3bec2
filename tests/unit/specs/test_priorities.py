"""Fleet priorities: every stage of a run outranks the stage before it in every run, and inside a stage the
spec's priority, then the tighter deadline, go first (the weights Airflow's scheduler sorts by)."""

from __future__ import annotations

import pytest

from flux_provider.specs.parser import load_spec
from flux_provider.specs.priorities import STAGE, deadline_slack_minutes, stages, urgency
from tests.support import REPO
from tests.support.specs import MINIMAL, plan_beside, write

SAMPLES = sorted((REPO / "dags" / "specs").glob("*.xml"))


def spec_with(tmp_path, *, schedule="<schedule><cron>0 3 * * *</cron></schedule>", deadline="", name="events"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    text = MINIMAL.format(name=name).replace("<schedule><cron>0 3 * * *</cron></schedule>", schedule + deadline)
    return load_spec(write(tmp_path, text, name), check_queries=False)


def test_stages_are_depths_in_the_dag():
    assert stages(
        {"plan": (), "export_upload": ("plan",), "publish": ("export_upload",), "transform": ("publish",)}
    ) == {
        "plan": 1,
        "export_upload": 2,
        "publish": 3,
        "transform": 4,
    }
    assert stages({"a": (), "b": (), "c": ("a", "b"), "d": ("b",)}) == {"a": 1, "b": 1, "c": 2, "d": 2}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_any_later_stage_of_any_sample_outranks_every_first_task(path):
    plans = [plan_beside(load_spec(p, check_queries=False)) for p in SAMPLES]
    first_tasks = [plan.tasks[0].priority_weight for plan in plans]
    plan = plan_beside(load_spec(path, check_queries=False))
    weights = [t.priority_weight for t in plan.tasks]
    assert weights == sorted(weights) and len(set(weights)) == len(weights)  # each stage above the one before
    assert all(w > max(first_tasks) for w in weights[1:])


def test_the_spec_priority_then_the_tighter_deadline_go_first(tmp_path):
    plain = spec_with(tmp_path / "a")
    tight = spec_with(tmp_path / "b", deadline='<deadline withinMinutes="30"/>')
    loose = spec_with(tmp_path / "c", deadline='<deadline finishBy="09:00"/>')  # 6 h after the 03:00 tick
    urgent = spec_with(tmp_path / "d", schedule='<schedule priority="3"><cron>0 3 * * *</cron></schedule>')
    assert deadline_slack_minutes(plain) is None and deadline_slack_minutes(tight) == 30
    assert deadline_slack_minutes(loose) == 360
    assert urgency(plain) == 0 < urgency(loose) < urgency(tight) < urgency(urgent)
    assert (urgency(tight), urgency(loose), urgency(urgent)) == (97, 75, 300)
    exports = [plan_beside(s).tasks[0].priority_weight for s in (plain, loose, tight, urgent)]
    assert exports == sorted(exports) and max(exports) < 2 * STAGE


def test_a_finish_by_before_the_tick_counts_to_the_next_day(tmp_path):
    spec = spec_with(
        tmp_path, schedule="<schedule><cron>30 22 * * *</cron></schedule>", deadline='<deadline finishBy="01:00"/>'
    )
    assert deadline_slack_minutes(spec) == 150


def test_a_priority_outside_0_to_9_is_refused_with_the_element(tmp_path):
    from flux_provider.specs.spec_error import SpecError

    with pytest.raises(SpecError) as caught:
        spec_with(tmp_path, schedule='<schedule priority="12"><cron>0 3 * * *</cron></schedule>')
    assert "priority" in str(caught.value)
