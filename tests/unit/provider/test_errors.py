"""The shared error taxonomy (pure)."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from flux_provider.errors import ErrorClass, FluxTerminalError, FluxTransientError, classify_sqlserver, flux_error


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (18456, ErrorClass.LOGIN),
        (208, ErrorClass.MISSING_OBJECT),
        (102, ErrorClass.SYNTAX),
        (1205, ErrorClass.DEADLOCK),
        (8115, ErrorClass.DATA),
        (20009, ErrorClass.CONNECTION),
        (40501, ErrorClass.THROTTLED),
        (229, ErrorClass.PERMISSION),
        (99999, ErrorClass.UNKNOWN),
    ],
)
def test_sqlserver_numbers_map_to_classes(number, expected):
    assert classify_sqlserver(number) is expected


def test_unknown_numbers_fall_back_to_the_text():
    assert classify_sqlserver(None, "Transaction was deadlocked on lock resources") is ErrorClass.DEADLOCK
    assert classify_sqlserver(77777, "Login failed for user 'x'") is ErrorClass.LOGIN
    # a batch with several statements where one is allowed: the query must change, retrying cannot help
    assert classify_sqlserver(None, "The batch holds more than one statement") is ErrorClass.SYNTAX
    assert ErrorClass.SYNTAX.terminal


@pytest.mark.parametrize("error_class", list(ErrorClass))
def test_terminal_classes_stop_airflow_retries_and_transient_ones_do_not(error_class):
    exc = flux_error("boom", error_class=error_class, dataset="titles", step="export", server_number=1)
    if error_class in (
        ErrorClass.LOGIN,
        ErrorClass.PERMISSION,
        ErrorClass.MISSING_OBJECT,
        ErrorClass.SYNTAX,
        ErrorClass.DATA,
        ErrorClass.CONFIG,
        ErrorClass.SUPERSEDED,  # a zombie try: its successor did the work
    ):
        assert isinstance(exc, FluxTerminalError) and isinstance(exc, AirflowFailException)
    else:
        assert isinstance(exc, FluxTransientError) and isinstance(exc, AirflowException)
        assert not isinstance(exc, AirflowFailException)
    assert str(exc).startswith(f"[{error_class.value}] data set 'titles' export: boom")
    assert exc.as_dict()["server_number"] == 1


def test_load_related_classes_are_the_ones_a_throttle_reacts_to():
    assert {c for c in ErrorClass if c.load_related} == {
        ErrorClass.TIMEOUT,
        ErrorClass.DEADLOCK,
        ErrorClass.THROTTLED,
        ErrorClass.CONNECTION,
    }


def test_a_bare_flux_error_is_typed_for_airflow_with_its_text_and_attributes():
    """Code with no Airflow in it (a spec, an identifier, a run's day) raises the taxonomy's ``FluxError``;
    ``typed`` makes it the terminal or transient exception of its class, as an operator raises it."""
    from flux_provider.error_taxonomy import FluxError
    from flux_provider.errors import typed

    bare = FluxError("no such day", error_class=ErrorClass.CONFIG, dataset="titles", step="render", fix="give one")
    assert not isinstance(bare, AirflowException)
    terminal = typed(bare)
    assert isinstance(terminal, FluxTerminalError) and isinstance(terminal, AirflowFailException)
    assert str(terminal) == str(bare)
    assert (terminal.dataset, terminal.step, terminal.fix) == ("titles", "render", "give one")
    transient = typed(FluxError("slow", error_class=ErrorClass.DEADLOCK, server_number=1205))
    assert isinstance(transient, FluxTransientError) and transient.server_number == 1205
    assert typed(terminal) is terminal


def test_an_operator_fails_a_bad_run_day_at_once_as_airflow_expects():
    """A conf day that is not a date is found by ``run_day`` (no Airflow in it) while the operator renders its
    fields: the try fails with Airflow's fail-fast exception, never retried."""
    from types import SimpleNamespace

    from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator

    op = S3ChunkUploadOperator(task_id="upload", dataset="titles", s3_location="s3://flux/x")
    ti = SimpleNamespace(try_number=1, xcom_push=lambda **_: None)
    run = SimpleNamespace(conf={"day": "yesterday"}, run_type="manual", partition_key=None)
    with pytest.raises(AirflowFailException, match="YYYY-MM-DD"):
        op.render_template_fields({"ti": ti, "dag_run": run, "dag": None})
