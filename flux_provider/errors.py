"""One error taxonomy for every flux step (export, upload, transform, refresh) and the recovery rules.

Each failure is classified into an :class:`ErrorClass` (:mod:`flux_provider.error_taxonomy`, which has no
Airflow in it). The class decides whether Airflow may retry: a terminal class raises
:class:`FluxTerminalError` (an ``AirflowFailException``: no further tries), a transient one raises
:class:`FluxTransientError` (an ``AirflowException``: the task's retries apply). The exception carries its
inputs as attributes (data set, step, class, server error number, exit code) so recovery rules and the
dashboard can match on them.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from flux_provider.error_taxonomy import (
    ERROR_XCOM,
    SQLSERVER_NUMBERS,
    Decision,
    ErrorClass,
    ErrorRecord,
    FluxError,
    classify_exception,
    classify_sqlserver,
    classify_text,
    exception_names,
)


class FluxTerminalError(FluxError, AirflowFailException):
    """A terminal failure: Airflow fails the task without using its remaining retries."""


class FluxTransientError(FluxError, AirflowException):
    """A transient failure: Airflow's retries apply."""


def flux_error(message: str, *, error_class: ErrorClass, **details) -> FluxError:
    """The right exception type (terminal or transient) for ``error_class``."""
    cls = FluxTerminalError if ErrorClass(error_class).terminal else FluxTransientError
    return cls(message, error_class=error_class, **details)


def typed(exc: FluxError) -> FluxError:
    """``exc`` as the exception Airflow acts on: itself if it is one, else the terminal or transient one of its
    class, with the same text and attributes (a :class:`~flux_provider.error_taxonomy.FluxError` raised where
    there is no Airflow)."""
    if isinstance(exc, (FluxTerminalError, FluxTransientError)):
        return exc
    return flux_error(
        exc.message,
        error_class=exc.error_class,
        dataset=exc.dataset,
        step=exc.step,
        server_number=exc.server_number,
        exit_code=exc.exit_code,
        fix=exc.fix,
    )


__all__ = [
    "ERROR_XCOM",
    "SQLSERVER_NUMBERS",
    "Decision",
    "ErrorClass",
    "ErrorRecord",
    "FluxError",
    "FluxTerminalError",
    "FluxTransientError",
    "classify_exception",
    "classify_sqlserver",
    "classify_text",
    "exception_names",
    "flux_error",
    "typed",
]
