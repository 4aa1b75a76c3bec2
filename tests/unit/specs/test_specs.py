"""XML data-set specs (pure): validation, safe parsing, checks across specs, the DAG factory in a DagBag."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from flux_provider.rules import Retry
from flux_provider.specs import SpecError, load_spec
from flux_provider.specs.factory import build_dags, load_specs
from tests.support import REPO
from tests.support.specs import MINIMAL, write


def spec_error(tmp_path: Path, text: str, name: str = "events") -> SpecError:
    with pytest.raises(SpecError) as failure:
        load_spec(write(tmp_path, text, name))
    return failure.value


def edit(old: str, new: str) -> str:
    text = MINIMAL.format(name="events")
    assert old in text
    return text.replace(old, new)


def test_a_minimal_spec_loads_with_defaults(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL.format(name="events")))
    assert spec.name == "events" and spec.dag_id == "flux_events"
    assert spec.source.connection == "mssql_default" and spec.export.mode == "streaming"
    assert spec.chunking.field_delimiter == "\x01" and spec.chunking.null_format == "\\N"
    assert spec.hive.staging_table == "events_staging" and spec.hive.partitions[0].value is None
    assert spec.throttle.pool == "flux_events" and (spec.throttle.min, spec.throttle.initial) == (1, 2)
    assert spec.schedule.cron == "0 3 * * *"


# One test per error class: each message names the file, the line, the element, the value and the fix.
@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            "<owner>team</owner>",
            "<owner>team</owner><owner>x</owner>",
            r"events\.xml:3: <owner>: <owner> is not allowed here: the spec expects <alerts> or <source> at this place",
        ),
        (
            '<s3 location="s3://flux/events"/>',
            '<s3 location="s3://Flux_Bucket/events"/>',
            r"events\.xml:5: <s3 location=>: 's3://Flux_Bucket/events' is not an S3 location\. Fix: write s3://bucket",
        ),
        (
            'targetTable="events_daily"',
            'targetTable="events-daily"',
            r"events\.xml:6: <hive targetTable=>: target table 'events-daily' is not a valid Hive identifier.*"
            r"Fix: rename the target table",
        ),
        ('table="events"', 'table="ev ents"', r"<source table=>: table 'ev ents' is not a valid SQL Server identifier"),
        (
            "<cron>0 3 * * *</cron>",
            "<cron>0 25 * * *</cron>",
            r"events\.xml:10: <cron>: '0 25 \* \* \*' is not a cron expression\. Fix: five fields",
        ),
        (
            '<partition name="day"/>',
            '<partition name="load_day"/>',
            r"<transform>: the dynamic partition column 'load_day' is not an output column.*Fix: select it last",
        ),
        (
            '<dataset name="events">',
            '<dataset name="events!">',
            r"<dataset name=>: 'events!' is not a valid value for <dataset name=>. Fix: use letters, digits and _",
        ),
        ("<transform>", '<transform file="missing.hql">', r"give the transform SQL inline or as file=, not both"),
    ],
)
def test_each_kind_of_error_is_located_and_explained(tmp_path, old, new, expected):
    error = spec_error(tmp_path, edit(old, new))
    assert re.search(expected, str(error)), str(error)
    assert error.error_class.value == "config" and error.terminal


def test_throttle_load_classes_override_the_taxonomy(tmp_path):
    text = edit("</schedule>", '</schedule>\n  <throttle initial="2" loadClasses="deadlock data"/>')
    assert load_spec(write(tmp_path, text)).throttle.load_classes == ("deadlock", "data")
    bad = edit("</schedule>", '</schedule>\n  <throttle loadClasses="deadlock slow"/>')
    assert "slow" in str(spec_error(tmp_path, bad))


def test_throttle_bounds_must_hold(tmp_path):
    text = edit("</schedule>", '</schedule>\n  <throttle initial="9" min="1" max="4"/>')
    error = spec_error(tmp_path, text)
    assert "<throttle>: the bounds do not hold: min=1 <= initial=9 <= max=4. Fix: choose" in str(error)
    assert error.line == 11


def test_refresh_retention_needs_a_partition_column(tmp_path):
    text = edit("</hive>", '</hive>\n  <refresh retentionDays="7" retentionColumn="dt"/>')
    assert "retentionColumn 'dt' is not a partition of the target" in str(spec_error(tmp_path, text))


def test_recovery_rules_are_parsed_in_order_and_checked(tmp_path):
    rules = """<recovery>
    <rule name="deadlock"><match number="1205"/><retry count="3" delaySeconds="10" backoff="2" jitter="true"/>
      <throttleDown/></rule>
    <rule><match class="login"/><fail/><alert/></rule>
  </recovery>
</dataset>"""
    spec = load_spec(write(tmp_path, edit("</dataset>", rules)))
    assert [r.name for r in spec.rules] == ["deadlock", None]
    assert spec.rules[0].match.number == 1205 and [a.kind for a in spec.rules[0].actions] == ["retry", "throttle_down"]
    assert spec.rules[0].actions[0] == Retry(count=3, delay_seconds=10, backoff=2, jitter=True)
    bad = rules.replace("<fail/><alert/>", "<retry count='1'/><fail/>")
    assert "contradict each other" in str(spec_error(tmp_path, edit("</dataset>", bad)))
    bad_regex = rules.replace('class="login"', 'message="(unclosed"')
    assert "is not a regular expression" in str(spec_error(tmp_path, edit("</dataset>", bad_regex)))


def test_the_file_is_named_after_its_data_set(tmp_path):
    error = spec_error(tmp_path, MINIMAL.format(name="events"), name="other")
    assert "rename the file to events.xml" in str(error)


def test_malformed_xml_names_the_line(tmp_path):
    error = spec_error(tmp_path, MINIMAL.format(name="events").replace("</owner>", "</ownr>"))
    assert "events.xml:3: not well-formed XML" in str(error)


XXE = """<?xml version="1.0"?>
<!DOCTYPE dataset [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<dataset name="events"><owner>&secret;</owner></dataset>
"""


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<dataset name="events"><owner>&lol9;</owner></dataset>
"""


@pytest.mark.parametrize("text", [XXE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_entity_attacks_are_rejected_before_parsing(tmp_path, text):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    error = spec_error(tmp_path, text)
    assert "events.xml:2: DOCTYPE/ENTITY declarations are not allowed" in str(error)
    assert "root:" not in str(error)  # nothing of /etc/passwd
    assert time.monotonic() - started < 1 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000


def test_an_external_entity_without_a_doctype_is_not_resolved(tmp_path):
    """An undeclared entity reference is a well-formedness error, not a file read."""
    error = spec_error(tmp_path, MINIMAL.format(name="events").replace("team", "&xxe;"))
    assert "not well-formed XML" in str(error) and "xxe" in str(error)


# ------------------------------------------------------------------ the sample bundle and the factory
def test_the_sample_specs_load():
    specs, errors = load_specs(REPO / "dags")
    assert errors == []
    assert {s.name for s in specs} == {"titles", "subscribers", "viewing_sessions", "ad_impressions"}


def dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


def test_the_sample_bundle_has_no_import_errors_and_one_dag_per_spec():
    bag = dagbag(REPO / "dags")
    assert bag.import_errors == {}
    specs, _ = load_specs(REPO / "dags")
    for spec in specs:
        dag = bag.dags[spec.dag_id]
        streaming = spec.export.mode == "streaming"
        export = ["plan", "export_upload", "publish"] if spec.source.is_split else ["export_upload"]
        chain = (export if streaming else ["export", "upload"]) + ["transform", "refresh"]
        assert sorted(t.task_id for t in dag.tasks) == sorted(chain)
        for upstream, downstream in zip(chain, chain[1:]):
            assert downstream in dag.get_task(upstream).downstream_task_ids
        assert {t.pool for t in dag.tasks} == {spec.throttle.pool}
        assert [o.name for o in dag.get_task("refresh").outlets] == [f"flux.{spec.name}"]
        assert f"### Data set `{spec.name}`" in dag.doc_md and spec.throttle.pool in dag.doc_md
        assert dag.max_active_runs == 1
    # the dimensions write a day partition each; the facts wait for that day from each (Airflow's partitions)
    assert type(bag.dags["flux_viewing_sessions"].timetable).__name__ == "PartitionedAssetTimetable"
    assert type(bag.dags["flux_titles"].timetable).__name__ == "PartitionCron"
    assert "one run per day, key `%Y-%m-%d`; starts when written by `titles`, `subscribers`" in (
        bag.dags["flux_viewing_sessions"].doc_md
    )
    assert bag.dags["flux_titles"].get_task("transform").partition == {"snapshot_day": "{{ flux_day }}"}
    assert bag.dags["flux_viewing_sessions"].get_task("transform").dynamic_partitions == ["day"]
    assert bag.dags["flux_viewing_sessions"].get_task("export_upload").is_mapped  # 8 key ranges, one task each


def test_the_benchmark_bundle_parses_so_make_bench_does_not_rot():
    """benchmarks/dags: the adaptive, source and end-to-end data sets and the stock chain they are compared with."""
    bag = dagbag(REPO / "benchmarks" / "dags")
    assert bag.import_errors == {}
    sources = {f"flux_bench_source_{n}" for n in (1, 2, 3)}
    assert set(bag.dags) == {"flux_bench_capacity", "flux_bench_e2e", "stock_chain", *sources}
    assert [t.task_id for t in bag.dags["stock_chain"].topological_sort()] == ["sql_to_s3", "s3_to_hive", "transform"]
    assert bag.dags["flux_bench_e2e"].get_task("export_upload").is_mapped


def test_a_broken_spec_is_an_import_error_of_its_own_file_only(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "dags", bundle)
    spec = bundle / "specs" / "subscribers.xml"
    spec.write_text(spec.read_text().replace('targetTable="subscribers"', 'targetTable="subscribers;drop"'))
    bag = dagbag(bundle)
    assert [Path(f).name for f in bag.import_errors] == ["subscribers.py"]
    message = next(iter(bag.import_errors.values()))
    assert (
        "subscribers.xml:11: <hive targetTable=>: target table 'subscribers;drop' is not a valid Hive identifier"
    ) in message and "Fix: rename the target table" in message
    assert {"flux_titles", "flux_viewing_sessions", "flux_ad_impressions"} <= set(bag.dags)
    assert "flux_subscribers" not in bag.dags
    # one DAG file for the folder: the broken spec is skipped, the others load
    assert set(build_dags(bundle)) == {"flux_titles", "flux_viewing_sessions", "flux_ad_impressions"}
    with pytest.raises(SpecError):
        build_dags(bundle, strict=True)


@pytest.mark.parametrize("mode, export_tasks", [("file", ["export", "upload"]), ("streaming", ["export_upload"])])
def test_the_export_queue_keeps_export_and_upload_on_one_host(tmp_path, mode, export_tasks):
    """mode="file" hands a file from export to upload: a queue served by one host keeps them together."""
    from flux_provider.specs.factory import build_dag

    text = edit(
        '<source schema="dbo" table="events"/>',
        f'<source schema="dbo" table="events"/>\n  <export mode="{mode}" queue="etl-host-1"/>',
    )
    dag = build_dag(load_spec(write(tmp_path, text)))
    queues = {t.task_id: t.queue for t in dag.tasks}
    assert {queues.pop(task) for task in export_tasks} == {"etl-host-1"}
    assert "etl-host-1" not in queues.values() and set(queues) == {"transform", "refresh"}
    error = spec_error(
        tmp_path,
        edit(
            '<source schema="dbo" table="events"/>',
            '<source schema="dbo" table="events"/>\n  <export queue="a queue"/>',
        ),
    )
    assert "queue" in str(error)


def test_after_must_name_a_known_data_set(tmp_path):
    folder = tmp_path / "specs"
    folder.mkdir()
    write(folder, MINIMAL.format(name="events").replace("<cron>0 3 * * *</cron>", "<after>nothing</after>"))
    assert build_dags(folder) == {}
    with pytest.raises(SpecError, match=r"<after> names data sets that have no spec here: \['nothing'\]"):
        build_dags(folder, strict=True)


# ------------------------------------------------------------------ what a new user trips over
def after_spec(name: str, *after: str, partition: str = '<partition name="day"/>') -> str:
    text = MINIMAL.format(name=name).replace('<partition name="day"/>', partition)
    return text.replace("<cron>0 3 * * *</cron>", "".join(f"<after>{a}</after>" for a in after))


def run_check(*args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from flux_provider.specs.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "graph", [{"a": ["b"], "b": ["a"]}, {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}], ids=["two", "three"]
)
def test_after_cycles_are_refused_at_check_and_at_dag_load(tmp_path, graph):
    from flux_provider.specs.factory import dag_for

    bundle = tmp_path / "bundle"
    (bundle / "specs").mkdir(parents=True)
    for name, after in graph.items():
        write(bundle / "specs", after_spec(name, *after), name=name)
        (bundle / f"{name}.py").write_text(
            "from airflow.sdk import DAG\nfrom flux_provider.specs.factory import dag_for\n\n"
            "dag: DAG = dag_for(__file__)\n"
        )
    cycle = [n for n in graph if n != "d"]
    code, out, _ = run_check(bundle)
    assert code == 1 and "<after> makes a cycle: a -> b" in out
    for name, upstream in zip(cycle, [*cycle[1:], cycle[0]]):
        assert f"{name}: {bundle / 'specs' / name}.xml" in out
        path = bundle / "specs" / f"{name}.xml"  # each member's own error, at its <after> that closes the cycle
        line = next(n for n, t in enumerate(path.read_text().splitlines(), 1) if f"<after>{upstream}</after>" in t)
        assert f"error: [config] data set '{name}' spec: {path}:{line}: <after>: " in out
    assert out.splitlines()[-1] == f"{len(graph) - len(cycle)} valid, {len(cycle)} invalid, 0 warnings"
    assert not any(f"ok     {name} " in out for name in cycle)
    assert ("ok     d" in out) == ("d" in graph)  # waits for a cycle, but is not in one: it loads
    for name in cycle:
        with pytest.raises(SpecError, match=r"<after> makes a cycle: " + name + " -> .* -> " + name):
            dag_for(bundle / f"{name}.py")
    others = {f"flux_{n}" for n in graph if n not in cycle}
    assert {dag_for(bundle / f"{n}.py").dag_id for n in graph if n not in cycle} == others
    assert set(build_dags(bundle)) == others
    bag = dagbag(bundle)
    assert sorted(Path(f).name for f in bag.import_errors) == sorted(f"{n}.py" for n in cycle)
    assert all("makes a cycle" in e for e in bag.import_errors.values())


def test_a_spec_after_itself_is_refused(tmp_path):
    assert "waits for itself" in str(spec_error(tmp_path, after_spec("events", "events")))


def test_the_documented_dag_file_loads_in_safe_mode_whatever_its_comments(tmp_path):
    """The README's DAG file, with its comments stripped, is parsed by Airflow; the old one-liner is not
    (no import error anywhere) and specs check says so."""
    bundle = tmp_path / "bundle"
    (bundle / "specs").mkdir(parents=True)
    write(bundle / "specs", MINIMAL.format(name="events"))
    write(bundle / "specs", MINIMAL.format(name="orders"), name="orders")
    readme = (REPO / "README.md").read_text()
    documented = re.search(r"```python\n( *# dags/titles\.py.*?)```", readme, re.S).group(1)
    code = "\n".join(line.strip() for line in documented.splitlines() if not line.lstrip().startswith("#"))
    (bundle / "events.py").write_text(code)
    (bundle / "orders.py").write_text("from flux_provider.specs.factory import dag_for\ndag = dag_for(__file__)\n")
    bag = dagbag(bundle)
    assert set(bag.dags) == {"flux_events"} and bag.import_errors == {}
    code_, out, _ = run_check(bundle)
    assert code_ == 0 and f"warning: {bundle / 'orders.py'}: Airflow's safe mode" in out
    assert "events.py" not in out
    assert run_check(bundle, "--strict")[0] == 1


@pytest.mark.parametrize(
    "query, reason",
    [
        ("SELECT id FROM dbo.events; DROP TABLE dbo.events", "the query holds 2 statements (SELECT, DROP)"),
        ("DELETE FROM dbo.events", "not a SELECT but DELETE"),
        ("SELECT id INTO dbo.copy FROM dbo.events", "SELECT ... INTO"),
        ("EXEC sp_who", "not a SELECT but EXECUTE"),
        ("WITH x AS (SELECT id FROM dbo.events) UPDATE x SET id = 1", "not a SELECT but UPDATE"),
        ("SELECT * FROM OPENQUERY(other, 'DELETE FROM t')", "calls OPENQUERY"),
    ],
)
def test_a_free_query_must_be_one_read_only_select(tmp_path, query, reason):
    text = edit('<source schema="dbo" table="events"/>', f"<source>\n    <query>{query}</query>\n  </source>")
    error = spec_error(tmp_path, text)
    assert "events.xml:5: <query>: " in str(error) and reason in str(error) and "Fix:" in str(error), str(error)
    assert error.terminal


@pytest.mark.parametrize(
    "query",
    [
        "SELECT id, [at] FROM dbo.events WITH (NOLOCK) WHERE kind = N'x;DROP TABLE y'",
        "WITH recent AS (SELECT id FROM dbo.events) SELECT id FROM recent UNION ALL SELECT 0;",
        "SELECT TOP 10 e.id, (SELECT COUNT(*) FROM dbo.other o WHERE o.id = e.id) AS n FROM dbo.events e",
    ],
)
def test_read_only_queries_pass(tmp_path, query):
    text = edit('<source schema="dbo" table="events"/>', f"<source><query>{query}</query></source>")
    assert load_spec(write(tmp_path, text)).source.query == query


def test_a_count_query_is_checked_too(tmp_path):
    text = edit(
        '<source schema="dbo" table="events"/>',
        '<source schema="dbo" table="events">'
        "<countQuery>SELECT COUNT(*) FROM dbo.events; TRUNCATE TABLE dbo.events</countQuery></source>",
    )
    assert "<countQuery>: the query holds 2 statements" in str(spec_error(tmp_path, text))


def test_a_spec_too_big_to_read_names_the_line_where_it_passes_the_limit(tmp_path):
    from flux_provider.specs.spec_xml import MAX_BYTES

    text = MINIMAL.format(name="events")
    comment = "<!--" + "\n".join("x" * 99 for _ in range(MAX_BYTES // 100 + 10)) + "-->"
    path = write(tmp_path, text.replace("<owner>", comment + "\n<owner>"))
    head = path.read_bytes()[:MAX_BYTES]
    error = spec_error(tmp_path, path.read_text())
    assert error.line == head.count(b"\n") + 1 > 10_000
    assert f"events.xml:{error.line}: the file has {path.stat().st_size} bytes, more than a spec may" in str(error)
    assert "move long SQL into a transform file" in str(error)


def test_a_spec_that_is_not_utf8_says_so(tmp_path):
    path = tmp_path / "events.xml"
    path.write_bytes(MINIMAL.format(name="events").replace("<owner>team", "<owner>\xe9quipe").encode("latin-1"))
    with pytest.raises(SpecError) as failure:
        load_spec(path)
    assert "events.xml:3: the file is not UTF-8: byte" in str(failure.value)
    assert "(0xe9, line 3)" in str(failure.value) and "save the file as UTF-8" in str(failure.value)
    declared = MINIMAL.format(name="events").replace('version="1.0"', 'version="1.0" encoding="ISO-8859-1"')
    path.write_bytes(declared.replace("<owner>team", "<owner>\xe9quipe").encode("latin-1"))
    assert load_spec(path).owner == "\xe9quipe"  # a declared encoding is honoured


def test_two_specs_with_one_name_name_both_files(tmp_path):
    write(tmp_path, MINIMAL.format(name="events"))
    error = spec_error(tmp_path, MINIMAL.format(name="events"), name="orders")
    assert f"the data set name 'events' is already declared by {tmp_path / 'events.xml'}" in str(error)
    assert 'name="orders"' in str(error) and "rename the file to events.xml" not in str(error)


def test_one_data_set_name_in_two_folders_is_an_error(tmp_path):
    for folder in ("team_a", "team_b"):
        (tmp_path / folder).mkdir()
        write(tmp_path / folder, MINIMAL.format(name="events"))
    code, out, _ = run_check(tmp_path / "team_a", tmp_path / "team_b")
    assert code == 1
    assert (
        f"{tmp_path / 'team_b' / 'events.xml'}:2: <dataset name=>: the data set 'events' is also declared by "
        f"{tmp_path / 'team_a' / 'events.xml'}"
    ) in out


def test_check_warns_when_a_run_without_logical_date_cannot_render(tmp_path):
    write(tmp_path, MINIMAL.format(name="base"), name="base")
    write(
        tmp_path,
        after_spec("events", "base", partition='<partition name="day" value="{{ ds }}"/>').replace(
            "CAST(at AS STRING) AS day FROM", "at FROM"
        ),
    )
    code, out, _ = run_check(tmp_path)
    assert code == 0 and "ok     events" in out
    line = next(n for n, t in enumerate((tmp_path / "events.xml").read_text().splitlines(), 1) if "<partition" in t)
    assert (
        f"events.xml:{line}: <partition name=\"day\" value=>: it uses ds, but the data set 'events' runs after base"
        in out
    )
    assert "{{ flux_day }}" in out
    write(
        tmp_path,
        after_spec("events", "base", partition='<partition name="day" value="{{ flux_day }}"/>').replace(
            "CAST(at AS STRING) AS day FROM", "at FROM"
        ),
    )
    assert "warning:" not in run_check(tmp_path)[1]
    assert "warning:" not in run_check(REPO / "dags")[1]  # the sample bundle as the README shows it


def test_check_warns_when_a_pool_may_grow_beyond_the_executor(tmp_path, monkeypatch):
    """A pool's slots above [core] parallelism are never used: check says so, naming the data set."""
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "8")
    write(tmp_path, MINIMAL.format(name="small").replace("</schedule>", '</schedule>\n  <throttle max="8"/>'), "small")
    write(tmp_path, MINIMAL.format(name="wide").replace("</schedule>", '</schedule>\n  <throttle max="12"/>'), "wide")
    code, out, _ = run_check(tmp_path)
    assert code == 0 and "ok     wide" in out
    assert "the data set 'wide' may run 12 tasks at once (max=12, initial=2)" in out
    assert "executor runs at most 8 ([core] parallelism)" in out and "'small'" not in out
    assert run_check("--strict", tmp_path)[0] == 1
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "16")
    assert "warning:" not in run_check(tmp_path)[1]


def test_check_warns_when_a_partitioned_cron_data_set_uses_the_logical_date(tmp_path):
    """A dimension that writes {{ flux_day }} runs per partition: its runs have no logical date either."""
    text = MINIMAL.format(name="snap").replace(
        '<partition name="day"/>', '<partition name="snapshot_day" value="{{ flux_day }}"/>'
    )
    write(tmp_path, text.replace("CAST(at AS STRING) AS day FROM", "'{{ ds }}' AS at FROM"), name="snap")
    out = run_check(tmp_path)[1]
    assert "<transform>: it uses ds, but the data set 'snap' runs per day partition" in out
    write(tmp_path, text.replace("CAST(at AS STRING) AS day FROM", "at FROM"), name="snap")
    assert "warning:" not in run_check(tmp_path)[1]


def test_check_refuses_partitions_that_cannot_work(tmp_path):
    """A day-partitioned dimension whose cron fires twice a day would load each day twice."""
    text = MINIMAL.format(name="snap").replace(
        '<partition name="day"/>', '<partition name="snapshot_day" value="{{ flux_day }}"/>'
    )
    write(tmp_path, text.replace("CAST(at AS STRING) AS day FROM", "at FROM"), name="snap")
    assert run_check(tmp_path)[0] == 0
    twice = text.replace("CAST(at AS STRING) AS day FROM", "at FROM").replace("0 3 * * *", "0 3,15 * * *")
    write(tmp_path, twice, name="snap")
    code, out, _ = run_check(tmp_path)
    line = next(n for n, t in enumerate(twice.splitlines(), 1) if "<cron>" in t)
    assert code == 1 and f"snap.xml:{line}: <cron>: the cron '0 3,15 * * *' fires more than once in the day" in out


def test_check_warns_when_a_partitioned_data_set_reads_the_triggers_conf(tmp_path):
    """Partitioned runs carry a partition key and no conf: a partition value read from the conf is empty."""
    hourly = MINIMAL.format(name="clicks").replace(
        "<schedule><cron>0 3 * * *</cron></schedule>", '<schedule grain="hour"><cron>5 * * * *</cron></schedule>'
    )
    conf = hourly.replace('<partition name="day"/>', '<partition name="hour" value="{{ dag_run.conf[\'hour\'] }}"/>')
    write(tmp_path, conf.replace("CAST(at AS STRING) AS day FROM", "at FROM"), name="clicks")
    code, out, _ = run_check(tmp_path)
    line = next(n for n, t in enumerate((tmp_path / "clicks.xml").read_text().splitlines(), 1) if "<partition" in t)
    assert code == 0 and "1 valid, 0 invalid, 1 warnings" in out
    assert (
        f'clicks.xml:{line}: <partition name="hour" value=>: it reads the trigger\'s conf, but the data set '
        "'clicks' runs per hour partition" in out
    )
    assert "Fix: write {{ flux_partition }} (the run's partition) or {{ flux_day }} instead" in out
    fixed = hourly.replace('<partition name="day"/>', '<partition name="hour" value="{{ flux_partition }}"/>')
    write(tmp_path, fixed.replace("CAST(at AS STRING) AS day FROM", "at FROM"), name="clicks")
    assert "warning:" not in run_check(tmp_path)[1]
