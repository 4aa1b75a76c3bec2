"""Pure decisions with no service behind them: the SQL the transform builds, partition expiry, the
controller's choice of slots, and the error classification tables (S3 and HiveServer2)."""

from __future__ import annotations

import datetime as dt

import pytest

from flux_provider.errors import ErrorClass
from flux_provider.throttle.limits import Sample


class RecordingSession:
    """Stands in for a HiveServer2 session: records the statements the operator builds (the SQL text is
    the behaviour under test here; running it is tested against Spark Thrift Server elsewhere)."""

    def __init__(self, columns=()):
        self.statements, self.columns = [], list(columns)

    def execute(self, sql, what=None):
        self.statements.append(sql)
        return []

    def column_names(self, sql):
        return self.columns


def transform(**kwargs):
    from flux_provider.operators.hive_transform import HiveTransformOperator

    args = dict(
        task_id="t",
        dataset="events",
        database="media",
        staging_table="events_staging",
        target_table="events_daily",
        sql="SELECT id, day FROM {{ staging }}",
    )
    return HiveTransformOperator(**{**args, **kwargs})


def test_an_unpartitioned_insert_overwrites_the_table_with_the_select():
    session = RecordingSession()
    transform(sql="SELECT id FROM s").insert(session, {"": 3})
    assert session.statements == ["INSERT OVERWRITE TABLE `media`.`events_daily`\nSELECT id FROM s"]


def test_a_dynamic_partition_insert_sets_dynamic_mode_and_names_the_partition_columns():
    session = RecordingSession()
    transform(sql="SELECT id, day FROM s", dynamic_partitions=["day"]).insert(session, {"day=2024-01-01": 1})
    assert session.statements[:3] == [
        "SET hive.exec.dynamic.partition=true",
        "SET hive.exec.dynamic.partition.mode=nonstrict",
        "SET spark.sql.sources.partitionOverwriteMode=dynamic",
    ]
    assert (
        session.statements[3]
        == "INSERT OVERWRITE TABLE `media`.`events_daily` PARTITION (`day`)\nSELECT id, day FROM s"
    )


def test_a_static_partition_becomes_a_quoted_literal_column_written_dynamically():
    """Static values go in as literals (quotes escaped), so the write is all-dynamic: a failed job keeps
    the previous partition. With no dynamic column the SELECT's own columns need not be looked up."""
    session = RecordingSession()
    op = transform(sql="SELECT id, name FROM s", partition={"day": "2024-01-01' OR '1"})
    op.insert(session, {"day=2024-01-01' OR '1": 2})
    insert = session.statements[-1]
    assert insert.startswith("INSERT OVERWRITE TABLE `media`.`events_daily` PARTITION (`day`)\n")
    assert "SELECT flux_q.*, '2024-01-01\\' OR \\'1' AS `day` FROM" in insert
    assert insert.endswith("FROM (\nSELECT id, name FROM s\n) flux_q")


def test_static_values_go_between_the_data_and_the_dynamic_columns():
    session = RecordingSession(columns=["id", "name", "hour"])
    op = transform(sql="SELECT id, name, hour FROM s", partition={"day": "2024-01-01"}, dynamic_partitions=["hour"])
    op.insert(session, {"day=2024-01-01/hour=3": 2})
    assert "SELECT flux_q.`id`, flux_q.`name`, '2024-01-01' AS `day`, flux_q.`hour` FROM" in session.statements[-1]


class AnsweringSession(RecordingSession):
    """Answers each statement with the next of ``answers`` (rows as PyHive returns them)."""

    def __init__(self, *answers):
        super().__init__()
        self.answers = list(answers)

    def execute(self, sql, what=None):
        self.statements.append(sql)
        return self.answers.pop(0)

    def scalar(self, sql, what=None):
        return self.execute(sql, what)[0][0]


def test_the_staging_rows_and_the_transform_are_counted_in_one_statement():
    session = AnsweringSession([(0, None, 5), (1, "2024-01-01", 3), (1, "2024-01-02", 2)])
    op = transform(sql="SELECT id, day FROM s", dynamic_partitions=["day"])
    assert op.count_rows(session) == (5, {"day=2024-01-01": 3, "day=2024-01-02": 2})
    assert len(session.statements) == 1
    assert "GROUP BY `day`" in session.statements[0] and "UNION ALL" in session.statements[0]

    session = AnsweringSession([(7, 0)])
    assert transform(sql="SELECT id FROM s", partition={"day": "2024-01-01"}).count_rows(session) == (7, {})
    session = AnsweringSession([(7, 7)])
    assert transform(sql="SELECT id FROM s").count_rows(session) == (7, {"": 7})


def test_the_written_partitions_are_counted_in_one_statement_and_a_missing_one_counts_zero():
    session = AnsweringSession([("2024-01-01", 3)])
    op = transform(sql="SELECT id, day FROM s", dynamic_partitions=["day"])
    assert op.count_target(session, ["day=2024-01-01", "day=2024-01-02"]) == {"day=2024-01-01": 3, "day=2024-01-02": 0}
    (statement,) = session.statements
    assert "WHERE (`day` = '2024-01-01') OR (`day` = '2024-01-02') GROUP BY `day`" in statement


def test_a_static_partition_with_no_rows_is_emptied_by_a_static_overwrite():
    session = RecordingSession()
    transform(sql="SELECT id FROM s", partition={"day": "2024-01-01"}).insert(session, {})
    assert session.statements == [
        "INSERT OVERWRITE TABLE `media`.`events_daily` PARTITION (`day`='2024-01-01')\nSELECT id FROM s"
    ]


def refresh(**kwargs):
    from flux_provider.operators.partition_refresh import PartitionRefreshOperator

    return PartitionRefreshOperator(task_id="r", dataset="events", database="media", table="events_daily", **kwargs)


def parts(*days):
    return {f"day={d}": {"values": {"day": d}} for d in days}


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
