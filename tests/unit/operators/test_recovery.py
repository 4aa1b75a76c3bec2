"""Recovery rules (pure): the decision per failure, the retry policy, alerts to a local receiver."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from flux_provider.errors import ErrorClass, FluxTerminalError, FluxTransientError
from flux_provider.recovery import Alert, Fail, Match, Recovery, RecoveryPolicy, Retry, Rule, Skip, ThrottleDown


def report(error_class="deadlock", number=None, exit_code=None, step="export", message="x", terminal=False):
    return {
        "error_class": error_class,
        "server_number": number,
        "exit_code": exit_code,
        "step": step,
        "message": message,
        "terminal": terminal,
        "dataset": "ds",
    }


RULES = (
    Rule(
        Match(number=1205),
        (
            Retry(count=3, delay_seconds=20, backoff=2, max_delay_seconds=50),
            ThrottleDown(factor=0.5),
        ),
        name="deadlock",
    ),
    Rule(Match(error_class="connection", step="upload"), (Retry(count=10, delay_seconds=60),)),
    Rule(Match(message=r"Invalid object name 'dbo\.tmp_"), (Skip(reason="scratch table gone"),)),
    Rule(Match(exit_code=137), (Fail(), Alert())),
    Rule(Match(error_class="login"), (Retry(count=1, delay_seconds=300), Alert())),
)


@pytest.mark.parametrize(
    "failure, try_number, expected",
    [
        (report(number=1205), 1, ("retry", "deadlock", 20.0, False, 0.5)),
        (report(number=1205), 2, ("retry", "deadlock", 40.0, False, 0.5)),
        (report(number=1205), 3, ("retry", "deadlock", 50.0, False, 0.5)),  # capped by maxDelaySeconds
        (report(number=1205), 4, ("fail", "deadlock", None, False, 0.5)),  # 3 retries used
        (report("connection", step="upload"), 7, ("retry", "rule 2", 60.0, False, None)),
        (
            report("connection", step="export"),
            1,
            ("retry", "default: 5 retries a minute apart, then fail and alert", 60.0, False, None),
        ),  # rule 2 is for uploads only
        (
            report("connection", step="export"),
            6,
            ("fail", "default: 5 retries a minute apart, then fail and alert", None, True, None),
        ),
        (
            report("missing_object", message="Invalid object name 'dbo.tmp_x'.", terminal=True),
            1,
            ("skip", "rule 3", None, False, None),
        ),
        (report("unknown", exit_code=137), 1, ("fail", "rule 4", None, True, None)),
        (report("syntax", terminal=True), 1, ("fail", "default", None, True, None)),  # terminal: fail fast
        (report("login", terminal=True), 1, ("retry", "rule 5", 300.0, True, None)),  # a rule may retry one
    ],
)
def test_first_matching_rule_decides(failure, try_number, expected):
    outcome = Recovery(rules=RULES).decide(failure, try_number)
    assert (outcome.kind, outcome.rule, outcome.delay, outcome.alert, outcome.throttle_down) == expected


def test_jitter_stays_within_20_percent():
    rules = (Rule(Match(), (Retry(count=9, delay_seconds=100, jitter=True),)),)
    delays = {Recovery(rules=rules, rng=random.Random(seed)).decide(report(), 1).delay for seed in range(50)}
    assert len(delays) > 10 and all(80 <= d <= 120 for d in delays)


def test_retries_allow_the_largest_rule():
    assert Recovery(rules=RULES).max_retries == 10 and Recovery().max_retries == 5


def test_the_retry_policy_answers_from_the_same_decision():
    from airflow.sdk.definitions.retry_policy import RetryAction

    policy = RecoveryPolicy(Recovery(rules=RULES))
    exc = FluxTransientError("boom", error_class=ErrorClass.DEADLOCK, server_number=1205, step="export")
    decision = policy.evaluate(exc, try_number=2, max_tries=10)
    assert decision.action is RetryAction.RETRY and decision.retry_delay.total_seconds() == 40
    assert "deadlock: retry 2/3" in decision.reason
    assert policy.evaluate(exc, try_number=4, max_tries=10).action is RetryAction.FAIL


def test_an_operator_failure_goes_through_the_rules_with_alert_and_record(tmp_path, webhook):
    """The mechanism inside execute(), with a real webhook receiver (no Airflow needed)."""
    from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator

    url = webhook.url
    rules = (Rule(Match(error_class="config"), (Fail(), Alert())),)
    op = S3ChunkUploadOperator(
        task_id="upload", dataset="titles", s3_location="s3://flux/x", recovery=Recovery(rules=rules, webhooks=[url])
    )
    pushed = {}
    ti = SimpleNamespace(
        try_number=1,
        dag_id="flux_titles",
        run_id="r1",
        task_id="upload",
        log_url="http://log/1",
        xcom_push=lambda key, value: pushed.update({key: value}),
        xcom_pull=lambda task_ids=None: None,
    )
    with pytest.raises(FluxTerminalError) as failure:
        op.execute({"ti": ti})
    assert failure.value.flux_outcome.kind == "fail"
    assert pushed["flux_error"]["error_class"] == "config"
    assert pushed["flux_error"]["recovery"]["rule"] == "rule 1"
    [alert] = webhook.received
    assert (alert["dataset"], alert["step"], alert["error_class"], alert["log_url"]) == (
        "titles",
        "upload",
        "config",
        "http://log/1",
    )
    assert alert["action"] == "fail" and "no export to upload" in alert["message"]


def test_retries_come_from_the_rules_unless_the_dag_or_task_sets_them():
    import pendulum
    from airflow.sdk import DAG

    from flux_provider.operators.bcp_export import BcpExportOperator

    rules = Recovery(rules=RULES)
    with DAG("r1", schedule=None, start_date=pendulum.datetime(2026, 1, 1), default_args={"retries": 0}):
        capped = BcpExportOperator(task_id="a", dataset="d", schema="dbo", table="t", recovery=rules)
    with DAG("r2", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
        ruled = BcpExportOperator(task_id="b", dataset="d", schema="dbo", table="t", recovery=rules)
        default = BcpExportOperator(task_id="c", dataset="d", schema="dbo", table="t")
        explicit = BcpExportOperator(task_id="e", dataset="d", schema="dbo", table="t", retries=2)
    assert (capped.retries, ruled.retries, default.retries, explicit.retries) == (0, 10, 5, 2)
    assert isinstance(ruled.retry_policy, RecoveryPolicy)


def test_a_try_killed_outside_the_rules_waits_the_documented_minute():
    """A try killed by a signal or the OOM killer never reaches the rules: Airflow's own retry_delay
    applies, so flux operators set it to the default rule's minute (Airflow's default is 300 s)."""
    import datetime as dt

    import pendulum
    from airflow.sdk import DAG

    from flux_provider.operators.bcp_export import BcpExportOperator

    with DAG("r3", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
        default = BcpExportOperator(task_id="a", dataset="d", schema="dbo", table="t")
    with DAG(
        "r4",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1),
        default_args={"retry_delay": dt.timedelta(seconds=7)},
    ):
        chosen = BcpExportOperator(task_id="b", dataset="d", schema="dbo", table="t")
    assert (default.retry_delay, chosen.retry_delay) == (dt.timedelta(seconds=60), dt.timedelta(seconds=7))


def test_the_wait_after_a_lost_try_follows_the_config_option(monkeypatch, tmp_path):
    """``[flux] lost_try_retry_delay`` sets that wait, for plain and for mapped (split) tasks alike."""
    import datetime as dt

    import pendulum
    from airflow.sdk import DAG

    from flux_provider.operators.bcp_export import BcpExportOperator
    from flux_provider.specs import load_spec
    from flux_provider.specs.factory import build_dag
    from tests.support.specs import MINIMAL, write

    monkeypatch.setenv("AIRFLOW__FLUX__LOST_TRY_RETRY_DELAY", "5")
    with DAG("r5", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
        op = BcpExportOperator(task_id="a", dataset="d", schema="dbo", table="t")
    split = MINIMAL.format(name="events").replace(
        'table="events"/>', 'table="events"><split column="id" parts="2"/></source>'
    )
    mapped = build_dag(load_spec(write(tmp_path, split))).get_task("export_upload")
    assert op.retry_delay == mapped.partial_kwargs["retry_delay"] == dt.timedelta(seconds=5)
