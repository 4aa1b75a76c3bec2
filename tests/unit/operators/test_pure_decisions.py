"""Pure decisions with no service behind them: partition expiry, the controller's choice of slots, and the
error classification tables (S3 and HiveServer2). The transform's SQL: ``tests/unit/formats/test_hive_dml.py``."""

from __future__ import annotations

import datetime as dt

import pytest

from flux_provider.errors import ErrorClass
from flux_provider.throttle.limits import Sample


def refresh(**kwargs):
    from flux_provider.operators.partition_refresh import PartitionRefreshOperator

    return PartitionRefreshOperator(task_id="r", dataset="events", database="media", table="events_daily", **kwargs)


def parts(*days):
    from flux_provider.hooks.metastore import HivePartition

    return {f"day={d}": HivePartition({"day": d}, f"s3a://b/t/day={d}") for d in days}


@pytest.mark.parametrize(
    "days, reference, keep, expected",
    [
        (("2024-01-01", "2024-01-09", "2024-01-10"), "2024-01-10", None, ["day=2024-01-01"]),
        (("2024-01-02", "2024-01-03"), "2024-01-10", None, ["day=2024-01-02"]),  # 8 and 7 days before: 7 stays
        (("2024-01-01",), "2024-01-10", "day=2024-01-01", []),  # the newest is never dropped
        (("20240101", "20240109"), "20240110", None, ["day=20240101"]),  # YYYYMMDD too
    ],
)
def test_partition_expiry(days, reference, keep, expected):
    assert refresh(retention_days=7, retention_column="day").expired(parts(*days), reference, keep) == expected


def test_no_retention_expires_nothing():
    assert refresh().expired(parts("2000-01-01"), "2024-01-10", None) == []


def test_a_retention_column_that_is_not_a_partition_column_is_named():
    from flux_provider.errors import FluxTerminalError

    with pytest.raises(FluxTerminalError, match="retention_column 'hour' is not a partition column of `media`"):
        refresh(retention_days=7, retention_column="hour").expired(parts("2024-01-01"), "2024-01-10", None)


def row(**kwargs):
    return {
        "dataset": "d",
        "pool": "flux_d",
        "low": 1,
        "high": 8,
        "initial": 2,
        "pinned": None,
        "load_classes": None,
        **kwargs,
    }


AT = dt.datetime(2026, 11, 27, 12, tzinfo=dt.timezone.utc)


def test_the_controller_obeys_a_pin_whatever_the_samples():
    from flux_provider.throttle.controller import Controller

    failing = [Sample(time=AT.timestamp(), latency=5, inflight=4, failed=True, error_class="deadlock")] * 4
    assert Controller().decide(row(pinned=3), 4, failing, AT) == (3, "pinned to 3")


def test_the_controller_starts_from_the_pools_slots_and_a_person_setting_them_is_not_a_probe():
    from flux_provider.throttle.controller import Controller

    controller = Controller(period=60)
    saturated = [Sample(time=AT.timestamp(), latency=30, inflight=4)]
    assert controller.decide(row(), 4, saturated, AT)[0] == 6  # slow start from the pool's 4
    value, _ = controller.decide(row(), 2, [], AT + dt.timedelta(minutes=1))  # a person set 2
    assert value == 2 and controller.limits["d"].value == 2


def test_the_controller_counts_only_the_data_sets_load_classes():
    from flux_provider.throttle.controller import Controller

    data_errors = [Sample(time=AT.timestamp(), latency=5, inflight=4, failed=True, error_class="data")] * 4
    assert Controller().decide(row(), 4, data_errors, AT)[0] == 6  # data errors say nothing about load
    strict = row(load_classes="data, deadlock")
    assert Controller().decide(strict, 4, data_errors, AT)[0] == 2


def test_new_bounds_rebuild_the_limit_within_them():
    from flux_provider.throttle.controller import Controller

    controller = Controller()
    controller.decide(row(), 4, [], AT)
    value, _ = controller.decide(row(low=1, high=3), 4, [], AT)
    assert value == 3 and (controller.limits["d"].low, controller.limits["d"].high) == (1, 3)


def client_error(code, status=400):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: client_error("SlowDown", 503), ErrorClass.THROTTLED),
        (lambda: client_error("AccessDenied", 403), ErrorClass.PERMISSION),
        (lambda: client_error("NoSuchBucket", 404), ErrorClass.MISSING_OBJECT),
        (lambda: client_error("BadDigest"), ErrorClass.DATA),
        (lambda: client_error("InternalError", 500), ErrorClass.CONNECTION),
        (
            lambda: __import__("botocore.exceptions").exceptions.EndpointConnectionError(endpoint_url="http://x"),
            ErrorClass.CONNECTION,
        ),
        (
            lambda: __import__("botocore.exceptions").exceptions.ReadTimeoutError(endpoint_url="http://x"),
            ErrorClass.CONNECTION,
        ),
        (lambda: ValueError("something else"), ErrorClass.UNKNOWN),
    ],
)
def test_s3_failures_classify(make, expected):
    from flux_provider.hooks.s3_errors import classify_s3

    assert classify_s3(make()) is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[TABLE_OR_VIEW_NOT_FOUND] The table or view `x` cannot be found", ErrorClass.MISSING_OBJECT),
        ("[PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'", ErrorClass.SYNTAX),
        ("[CAST_INVALID_INPUT] The value 'x' of the type STRING cannot be cast to INT", ErrorClass.DATA),
        ("org.apache.hadoop.security.AccessControlException: Permission denied", ErrorClass.PERMISSION),
        ("[LOCATION_ALREADY_EXISTS] Cannot name the managed table", ErrorClass.CONFIG),
        ("java.util.concurrent.TimeoutException: Futures timed out", ErrorClass.TIMEOUT),
        ("SlowDown: Please reduce your request rate", ErrorClass.THROTTLED),
        ("Invalid SessionHandle", ErrorClass.CONNECTION),
        ("[FAILED_READ_FILE.FILE_NOT_EXIST] underlying files have been updated", ErrorClass.UNKNOWN),
        ("something nobody has seen", ErrorClass.UNKNOWN),
    ],
)
def test_hiveserver2_failures_classify(text, expected):
    from flux_provider.hooks.hive_session import classify_hive

    assert classify_hive(RuntimeError(text)) is expected


class CountingTaskInstance:
    """Answers get_dr_count as the Task SDK's RuntimeTaskInstance does (through the supervisor, which asks the
    API server: no server here), or fails like it when the API server is away."""

    dag_id = "flux_events"

    def __init__(self, running: int | None):
        self.running, self.asked = running, []

    def get_dr_count(self, dag_id, states=None):
        self.asked.append((dag_id, states))
        if self.running is None:
            raise ConnectionError("the API server is away")
        return self.running


@pytest.mark.parametrize("running, beside", [(1, 0), (3, 2), (None, None)])
def test_insert_leftovers_wait_while_another_run_of_the_dag_may_be_writing(running, beside, caplog, capsys):
    """A catch-up (maxActiveRuns > 1) runs INSERTs into one table at once: a refresh must not take another
    run's staging files for a killed INSERT's. It cleans only when its own run is the only one running."""
    from flux_provider.operators.base import runs_beside
    from flux_provider.operators.partition_refresh import PartitionRefreshOperator

    ti = CountingTaskInstance(running)
    assert runs_beside({"ti": ti}) == beside
    assert ti.asked == [("flux_events", ["running"])]
    assert runs_beside({"ti": object()}) == 0  # an operator called outside Airflow
    op = PartitionRefreshOperator(task_id="refresh", dataset="events", database="d", table="t")
    # a location no cleanup can reach: alone, the housekeeping runs (and finds nothing); beside others, it waits
    removed = op.clean_insert_leftovers({"ti": ti}, None, "file:///nowhere", dt.datetime.now(dt.timezone.utc))
    assert removed == 0
    logged = caplog.text + "".join(capsys.readouterr())  # Airflow's task logger may write to the console
    waited = "are left to a run alone" in logged
    assert waited is (beside != 0)
