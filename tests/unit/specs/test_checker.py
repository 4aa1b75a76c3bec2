"""``flux-specs check``, the checker a user's CI or pre-commit runs: exit codes, output, messages."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flux_provider.specs import SpecError, load_spec
from tests.support import REPO
from tests.support.specs import MINIMAL, flux_specs, write

SPEC = MINIMAL.format(name="events")


def test_exit_codes_valid_invalid_and_nothing_to_check(tmp_path):
    good, bad, empty = tmp_path / "good", tmp_path / "bad", tmp_path / "empty"
    for folder in (good, bad, empty):
        folder.mkdir()
    write(good, SPEC)
    write(bad, SPEC.replace('name="events"', 'name="9events"'))
    (empty / "core-site.xml").write_text("<configuration/>")  # XML, but no spec

    valid = flux_specs("check", good)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert valid.stdout.splitlines() == [
        f"ok     {'events':<24} {good / 'events.xml'}",
        "1 valid, 0 invalid, 0 warnings",
    ]

    invalid = flux_specs("check", bad)
    assert invalid.returncode == 1 and invalid.stdout.startswith(f"error: [config] spec: {bad / 'events.xml'}:2:")

    assert flux_specs("check", good, bad).returncode == 1  # one invalid spec fails the whole check
    nothing = flux_specs("check", empty)
    assert nothing.returncode == 2 and "no spec" in nothing.stdout and "1 other XML files skipped" in nothing.stdout
    missing = flux_specs("check", tmp_path / "nowhere")
    assert missing.returncode == 2 and f"{tmp_path / 'nowhere'}: no such file or folder" in missing.stderr
    assert missing.stdout == ""


def test_nothing_but_results_on_stdout(tmp_path):
    """Every line on stdout is a result (ok, error, warning, the summary): no log line of Airflow's."""
    write(tmp_path, SPEC.replace("<cron>0 3 * * *</cron>", "<preset>none</preset>"))
    done = flux_specs("check", REPO / "dags", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for line in done.stdout.splitlines():
        assert re.match(r"^(ok     |error: |warning: |\d+ valid, \d+ invalid, \d+ warnings)", line), line


def test_folders_are_searched_at_any_depth_and_a_name_in_two_sub_folders_fails_as_airflow_would(tmp_path):
    """Airflow's DagBag walks the DAG folder's tree: so does the check, and both refuse one name twice."""
    from airflow.dag_processing.dagbag import DagBag

    dag_file = (
        "from airflow.sdk import DAG\nfrom flux_provider.specs.factory import dag_for\n\ndag: DAG = dag_for(__file__)\n"
    )
    for team in ("team_a", "team_b"):
        (tmp_path / team / "specs").mkdir(parents=True)
        write(tmp_path / team / "specs", SPEC)
        (tmp_path / team / "events.py").write_text(dag_file)
    bag = DagBag(dag_folder=str(tmp_path))
    assert bag.import_errors  # Airflow refuses the second DAG of one id
    done = flux_specs("check", tmp_path)
    assert done.returncode == 1
    second = tmp_path / "team_b" / "specs" / "events.xml"
    assert f"error: [config] data set 'events' spec: {second}:2: <dataset name=>: the data set 'events' is also" in (
        done.stdout
    )
    assert f"ok     {'events':<24} {tmp_path / 'team_a' / 'specs' / 'events.xml'}" in done.stdout


def test_json_format_for_ci_annotations(tmp_path):
    write(tmp_path, SPEC.replace("<owner>team</owner>", "<owner>team</owner><bogus/>"), name="broken")
    write(tmp_path, MINIMAL.format(name="orders"), name="orders")
    done = flux_specs("check", "--format", "json", tmp_path)
    report = json.loads(done.stdout)  # the whole of stdout is one document
    assert done.returncode == report["exit_code"] == 1
    assert report["valid"] == [{"dataset": "orders", "path": str(tmp_path / "orders.xml")}]
    (error,) = report["errors"]
    assert (error["path"], error["line"], error["element"]) == (str(tmp_path / "broken.xml"), 3, "bogus")
    assert error["message"].startswith("<bogus> is not allowed here") and error["fix"]


def test_json_warnings_carry_the_element_and_the_fix_and_a_missing_path_answers_too(tmp_path):
    write(tmp_path, MINIMAL.format(name="base"), name="base")
    waits = SPEC.replace("<cron>0 3 * * *</cron>", "<after>base</after>")
    write(tmp_path, waits.replace("CAST(at AS STRING) AS day FROM", "'{{ ds }}' AS day FROM"))
    done = flux_specs("check", "--format", "json", tmp_path)
    report = json.loads(done.stdout)
    assert done.returncode == report["exit_code"] == 0
    (warning,) = report["warnings"]
    line = next(n for n, t in enumerate((tmp_path / "events.xml").read_text().splitlines(), 1) if "<transform>" in t)
    assert (warning["path"], warning["line"], warning["element"]) == (str(tmp_path / "events.xml"), line, "transform")
    assert warning["message"].startswith("it uses ds, but the data set 'events' runs after base")
    assert warning["fix"].startswith("write {{ flux_day }} instead")
    assert (
        warning["text"] == f"{tmp_path / 'events.xml'}:{line}: <transform>: {warning['message']}. Fix: {warning['fix']}"
    )
    missing = flux_specs("check", "--format", "json", tmp_path / "nowhere")
    assert missing.returncode == 2 and json.loads(missing.stdout) == {
        "exit_code": 2,
        "missing": str(tmp_path / "nowhere"),
        "message": f"{tmp_path / 'nowhere'}: no such file or folder",
    }


def test_a_cycle_names_the_line_of_the_after_that_closes_it(tmp_path):
    for name, upstream in (("a", "b"), ("b", "a")):
        write(tmp_path, MINIMAL.format(name=name).replace("<cron>0 3 * * *</cron>", f"<after>{upstream}</after>"), name)
    done = flux_specs("check", tmp_path)
    assert done.returncode == 1
    line = next(n for n, text in enumerate((tmp_path / "a.xml").read_text().splitlines(), 1) if "<after>" in text)
    assert f"{tmp_path / 'a.xml'}:{line}: <after>: <after> makes a cycle: a -> b -> a" in done.stdout


# One case per kind of rule in dataset.xsd: (what to change in the minimal spec, the sentence expected).
SCHEMA_RULES = {
    "sequence": (
        ("<owner>team</owner>", "<owner>team</owner><bogus/>"),
        r":3: <bogus>: <bogus> is not allowed here: the spec expects <alerts> or <source> at this place .*"
        r"Fix: add what is missing before <bogus>, or fix the spelling",
    ),
    "required element": (
        ("<owner>team</owner>", ""),
        r"<source>: <source> is not allowed here: the spec expects <description> or <owner>",
    ),
    "unknown attribute": (
        ('<s3 location="s3://flux/events"/>', '<s3 location="s3://flux/events" keepruns="2"/>'),
        r"<s3 keepruns=>: <s3> has no attribute keepruns=\. Fix: check its spelling \(attributes are case-sensitive\)",
    ),
    "required attribute": (
        ('<s3 location="s3://flux/events"/>', "<s3/>"),
        r'<s3>: <s3> needs the attribute location=\. Fix: add location="\.\.\." to <s3>',
    ),
    "pattern": (
        ('name="events"', 'name="9events"'),
        r"<dataset name=>: '9events' is not a valid value for <dataset name=>\. Fix: use letters, digits and _ only",
    ),
    "enumeration": (
        ('<s3 location="s3://flux/events"/>', '<export engine="bulk"/><s3 location="s3://flux/events"/>'),
        r"<export engine=>: 'bulk' is not one of the values <export engine=> takes\. Fix: write one of: auto, bcp, "
        r"dbapi",
    ),
    "positiveInteger": (
        ("</schedule>", '</schedule><throttle initial="0"/>'),
        r"<throttle initial=>: '0' is not valid for <throttle initial=>, which takes a whole number of 1 or more\. "
        r"Fix: write a whole number of 1 or more",
    ),
    "nonNegativeInteger": (
        ("</schedule>", '</schedule><throttle min="-1"/>'),
        r"<throttle min=>: '-1' is not valid for <throttle min=>, which takes a whole number of 0 or more",
    ),
    "boolean": (
        ('targetTable="events_daily"', 'targetTable="events_daily" createDatabase="yes"'),
        r"<hive createDatabase=>: 'yes' is not valid for <hive createDatabase=>, which takes true or false",
    ),
    "decimal above zero": (
        ('<s3 location="s3://flux/events"/>', '<chunking sizeMb="0"/><s3 location="s3://flux/events"/>'),
        r"<chunking sizeMb=>: 0 is out of range for <chunking sizeMb=>\. Fix: write a value above 0",
    ),
    "list of values": (
        ("</schedule>", '</schedule><throttle loadClasses="timeout slow"/>'),
        r"<throttle loadClasses=>: 'slow' is not one of the values <throttle loadClasses=> takes\. Fix: write one of: "
        r"connection, login",
    ),
    "at most": (
        ("<schedule>", '<schedule priority="12">'),
        r"<schedule priority=>: 12 is out of range for <schedule priority=>\. Fix: write a value at most 9",
    ),
    "text only": (
        ("<owner>team</owner>", "<owner>team<b>x</b></owner>"),
        r"<owner>: <owner> holds text only, and it contains an element\. Fix: remove the elements inside <owner>",
    ),
    "elements only": (
        ('<source schema="dbo" table="events"/>', '<source schema="dbo" table="events">events</source>'),
        r"<source>: <source> holds elements only, and it contains text",
    ),
    "non-empty text": (("<owner>team</owner>", "<owner> </owner>"), r"<owner>: <owner> is empty"),
    "root element": (
        (SPEC, '<?xml version="1.0"?>\n<datasets/>\n'),
        r"<datasets>: the document's root element is <datasets>, not <dataset>: this is not a data-set spec",
    ),
}


@pytest.mark.parametrize("rule", sorted(SCHEMA_RULES))
def test_every_kind_of_schema_error_is_a_sentence_with_file_line_element_and_fix(tmp_path, rule):
    (old, new), expected = SCHEMA_RULES[rule]
    assert old in SPEC
    path = write(tmp_path, SPEC.replace(old, new, 1))
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    text = str(raised.value)
    assert re.search(expected, text), text
    assert text.startswith(f"[config] spec: {path}:") and raised.value.line and raised.value.fix
    # none of libxml2's own wording is left
    for raw in ("Element '", "facet", "atomic type", "This element is not expected", "validation root"):
        assert raw not in text, (raw, text)
    assert not re.search(r"(?<!\.)\.\.(?!\.)", text), text  # libxml2's doubled full stops


def test_the_cases_cover_every_kind_of_rule_the_xsd_uses():
    """A new kind of rule in dataset.xsd (a facet or a built-in type) needs its case above."""
    xsd = (REPO / "flux_provider" / "specs" / "dataset.xsd").read_text()
    facets = set(
        re.findall(
            r"<xs:(pattern|enumeration|minExclusive|minInclusive|maxInclusive|maxExclusive|"
            r"minLength|maxLength|length|list|union)\b",
            xsd,
        )
    )
    types = set(re.findall(r'(?:type|base)="xs:(\w+)"', xsd)) - {"string", "token"}
    covered_facets = {"pattern", "enumeration", "minExclusive", "maxInclusive", "minLength", "list"}
    covered_types = {"positiveInteger", "nonNegativeInteger", "boolean", "decimal", "integer", "date", "anyURI"}
    assert facets <= covered_facets, facets - covered_facets
    assert types <= covered_types, types - covered_types


@pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs git")
def test_the_pre_commit_hook_runs_the_checker_on_the_specs_of_a_commit(tmp_path):
    """The repository's ``.pre-commit-hooks.yaml``, tried by pre-commit itself in a user's repository."""
    pre_commit = Path(sys.executable).with_name("pre-commit")
    if not pre_commit.exists():
        pytest.fail("pre-commit is not installed: `make setup` installs the test extra, which has it")
    user = tmp_path / "user-repo"
    (user / "dags" / "specs").mkdir(parents=True)
    write(user / "dags" / "specs", SPEC)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
    }
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=user, check=True, env=env)
    subprocess.run([*git, "add", "."], cwd=user, check=True, env=env)

    def try_hook() -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(pre_commit), "try-repo", str(REPO), "flux-specs-check-system", "--all-files"],
            cwd=user,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    passed = try_hook()
    assert passed.returncode == 0 and "flux-specs check" in passed.stdout and "Passed" in passed.stdout, passed.stdout
    write(user / "dags" / "specs", SPEC.replace("<owner>team</owner>", ""))
    subprocess.run([*git, "add", "."], cwd=user, check=True, env=env)
    failed = try_hook()
    assert failed.returncode == 1 and "Failed" in failed.stdout and "<source> is not allowed here" in failed.stdout


def test_pools_sync_on_an_unmigrated_database_says_so_in_one_line_and_writes_nothing(tmp_path):
    import os
    import sqlite3

    write(tmp_path, SPEC)
    database = tmp_path / "airflow.db"
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "home")}
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{database}"
    script = Path(sys.executable).with_name("flux-specs")
    done = subprocess.run(
        [str(script), "pools", "sync", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
    assert line == (
        f"error: Airflow's metadata database sqlite:///{database} has no Airflow tables (no slot_pool): it has not "
        "been migrated. Fix: run `airflow db migrate` first (or point AIRFLOW__DATABASE__SQL_ALCHEMY_CONN at your "
        "Airflow's database)"
    )
    tables = sqlite3.connect(database).execute("SELECT name FROM sqlite_master").fetchall() if database.exists() else []
    assert tables == []  # no flux table made in a database Airflow does not own yet
