"""The plan layer: each sample spec's plan, every split kind and dependency form, without Airflow's DAGs,
and the rendered DAG is exactly its plan."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flux_provider.specs.parser import load_spec
from flux_provider.specs.plan import OPERATORS, plan_for
from tests.support import REPO
from tests.support.specs import MINIMAL, plan_beside, write

SAMPLES = sorted([*(REPO / "dags" / "specs").glob("*.xml"), *(REPO / "tests" / "dags" / "specs").glob("*.xml")])


def plan_of(path):
    return plan_beside(load_spec(path, check_queries=False))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_every_sample_plans_a_chain_in_its_pool_that_ends_in_its_asset(path):
    spec = load_spec(path, check_queries=False)
    plan = plan_beside(spec)
    ids = [t.task_id for t in plan.tasks]
    assert plan.dag_id == spec.dag_id and plan.asset.name == f"flux.{spec.name}"
    assert plan.asset.extra["published"] == f"{spec.s3_location}/_published.json"
    assert {t.pool for t in plan.tasks} == {spec.throttle.pool}
    assert plan.edges() == list(zip(ids, ids[1:]))  # a chain, in the order the tasks are listed
    assert [t.task_id for t in plan.tasks if t.outlets] == [ids[-1]] and plan.tasks[-1].outlets == (plan.asset.name,)
    assert plan.tasks[-1].args.landing.s3_location == spec.s3_location  # the last task prunes the landing
    transform = plan.task("transform")
    assert transform.args.upload_task_id == transform.upstream[0]
    assert ids[-1] == ("refresh" if spec.hive.partitions else "transform")
    if spec.source.is_split:
        assert ids[:3] == ["plan", "export_upload", "publish"] and plan.task("export_upload").mapped_over == "plan"
    else:
        assert ids[0] == "export_upload" and spec.export.mode == "streaming"


def test_file_mode_exports_then_uploads_on_the_same_queue(tmp_path):
    text = MINIMAL.format(name="events").replace(
        '<source schema="dbo" table="events"/>',
        '<source schema="dbo" table="events"/><export mode="file" queue="host-a"/>',
    )
    plan = plan_of(write(tmp_path, text))
    assert [(t.task_id, t.kind, t.upstream) for t in plan.tasks[:2]] == [
        ("export", "export", ()),
        ("upload", "upload", ("export",)),
    ]
    assert plan.task("export").args.queue == plan.task("upload").args.queue == "host-a"
    assert plan.task("upload").args.export_task_id == "export"


def test_each_split_kind_reaches_the_plan_task(tmp_path):
    by_name = {p.stem: plan_of(p) for p in SAMPLES}
    keys, days, queries = (by_name[n].task("plan").args for n in ("split_keys", "split_days", "split_queries"))
    assert (keys.column, keys.parts, keys.every) == ("k", 4, None)
    assert (days.column, days.every) == ("at", "day") and by_name["split_days"].schedule.kind in (
        "cron_interval",
        "calendar_interval",
        "manual",
    )
    assert [name for name, _ in queries.queries] == ["low", "high", "nokey"]
    # named queries may overlap: only their publish checks the total against the count query
    spec = load_spec(REPO / "tests" / "dags" / "specs" / "split_queries.xml", check_queries=False)
    assert by_name["split_queries"].task("publish").args.count_sql == spec.source.count_query
    assert by_name["split_keys"].task("publish").args.count_sql is None
    part = by_name["split_keys"].task("export_upload").args
    assert not {"schema", "table", "sql", "count_sql"} & set(part.kwargs())  # each part brings its own query


def test_dependency_forms_cron_preset_and_after(tmp_path):
    after = plan_of(REPO / "dags" / "specs" / "viewing_sessions.xml").schedule
    assert (after.kind, after.after) == ("after", ("titles", "subscribers"))
    cron = plan_of(write(tmp_path, MINIMAL.format(name="events"))).schedule
    assert (cron.kind, cron.cron) == ("cron", "0 3 * * *")
    preset = MINIMAL.format(name="other").replace("<cron>0 3 * * *</cron>", "<preset>@daily</preset>")
    assert plan_of(write(tmp_path, preset, "other")).schedule.kind == "cron"


def test_the_plan_prints_every_task_with_its_operator_and_pool():
    plan = plan_of(REPO / "dags" / "specs" / "viewing_sessions.xml")
    text = plan.text()
    for task in plan.tasks:
        assert f"- {task.task_id}: {task.operator}" in text
    assert "one per part of plan" in text and "updates flux.viewing_sessions" in text
    out = subprocess.run(
        [sys.executable, "-m", "flux_provider.specs", "plan", "viewing_sessions", "--folder", str(REPO / "dags")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == text


def test_planning_every_sample_loads_no_operator_and_no_renderer():
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from flux_provider.specs.parser import load_spec\n"
        "from flux_provider.specs.plan import plan_for, specs_beside\n"
        f"for p in {[str(p) for p in SAMPLES]!r}:\n"
        "    s = load_spec(Path(p), check_queries=False)\n"
        "    plan_for(s, specs_beside(s))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('flux_provider.operators', 'flux_provider.specs.render',"
        " 'airflow.timetables', 'airflow.providers.amazon.aws', 'boto3', 'pyarrow'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_the_rendered_dag_is_its_plan(path):
    from flux_provider.specs.factory import build_dag

    spec = load_spec(path, check_queries=False)
    plan, dag = plan_beside(spec), build_dag(spec)
    assert sorted(dag.task_dict) == sorted(t.task_id for t in plan.tasks)
    edges = sorted((up, t.task_id) for t in dag.tasks for up in t.upstream_task_ids)
    assert edges == sorted(plan.edges())
    for task in plan.tasks:
        rendered = dag.task_dict[task.task_id]
        assert type(rendered).__name__ in (task.operator, "MappedOperator") and rendered.pool == task.pool
        assert (rendered.priority_weight, str(rendered.weight_rule)) == (task.priority_weight, "absolute")
    assert dag.max_active_runs == plan.schedule.max_active_runs


def test_the_plan_is_the_whole_description_and_reads_no_file(tmp_path, monkeypatch):
    """``render(plan)`` needs nothing but the plan (the rules, channels, calendar, deadline and docs are in
    it), and ``plan_for`` loads no spec but through the loader it is given (here an empty dict's)."""
    from flux_provider.specs import parser
    from flux_provider.specs.render import render

    text = MINIMAL.format(name="events").replace(
        "<owner>team</owner>", "<owner>team</owner><alerts><email>oncall@example.com</email></alerts>"
    )
    text = text.replace("</schedule>", '</schedule><deadline withinMinutes="45"/>')
    spec = load_spec(write(tmp_path, text), check_queries=False)
    read = []
    monkeypatch.setattr(parser, "load_spec", lambda *a, **k: read.append(a))
    plan = plan_for(spec, {}.get)
    assert read == []  # (the default loader of old read the spec files beside it)
    assert plan.deadline == spec.deadline and plan.emails == ("oncall@example.com",) and plan.rules == spec.rules
    assert plan.spec_file == "events.xml" and "### Data set `events`" in plan.doc
    dag = render(plan)
    assert dag.params["flux_spec"] == "events.xml" and dag.doc_md == plan.doc
    (alert,) = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    assert alert.callback.kwargs["emails"] == ["oncall@example.com"]
    assert "deadline: finish within 45 minutes of being queued" in plan.text()


@pytest.mark.parametrize("kind", sorted(OPERATORS))
def test_each_kind_of_task_gives_its_operator_a_record_of_its_parameters(kind):
    """A task's arguments are a record whose fields are its operator's keyword parameters (its own, a flux
    operator's or Airflow's), handed over as they are: a field the operator does not take fails here."""
    import dataclasses
    import inspect

    from airflow.sdk import BaseOperator

    from flux_provider.operators.base import FluxOperator
    from flux_provider.specs.render import OPERATOR_CLASSES
    from flux_provider.specs.task_args import ARGS

    operator = OPERATOR_CLASSES[OPERATORS[kind]]
    taken = {
        name
        for cls in (*operator.__mro__[: operator.__mro__.index(FluxOperator) + 1], BaseOperator)
        for name in inspect.signature(cls.__init__).parameters
    }
    fields = {f.name for f in dataclasses.fields(ARGS[kind])}
    assert fields - taken == set(), f"{OPERATORS[kind]} takes no {sorted(fields - taken)}"


def test_every_sample_task_carries_the_record_of_its_kind():
    from flux_provider.specs.task_args import ARGS

    for path in SAMPLES:
        for task in plan_beside(load_spec(path, check_queries=False)).tasks:
            assert type(task.args) is ARGS[task.kind], (path.stem, task.task_id)
