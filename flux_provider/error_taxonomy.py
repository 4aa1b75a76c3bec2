"""The error taxonomy, with no Airflow in it: every flux failure's :class:`ErrorClass`, the classifiers,
:class:`FluxError` (a classified failure of one step of one data set) and :class:`ErrorRecord` (a failed
try, as stored). Specs, plans and records raise and read these; :mod:`flux_provider.errors` adds the
exceptions Airflow acts on (terminal: no further tries; transient: the retries apply) and is what
operators, hooks and users import.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from typing import Literal

from flux_provider.records import Record


class ErrorClass(str, enum.Enum):
    CONNECTION = "connection"  # server unreachable, connection reset
    LOGIN = "login"  # bad credentials, database not accessible
    PERMISSION = "permission"  # authenticated but not allowed
    TIMEOUT = "timeout"  # the step ran out of time
    DEADLOCK = "deadlock"  # chosen as deadlock victim, lock timeout
    THROTTLED = "throttled"  # the service asks us to slow down (busy, SlowDown, 503)
    MISSING_OBJECT = "missing_object"  # table/column/bucket/database does not exist
    SYNTAX = "syntax"  # the SQL is wrong
    DATA = "data"  # a value does not fit, conversion/overflow, corrupt file
    CONFIG = "config"  # a bad spec or parameter (identifier, path, option)
    LOST = "lost"  # lost to the orchestrator: killed, not started, its heartbeat or report lost (not the rules')
    SUPERSEDED = "superseded"  # a newer try of the same run published: this one was given up (a zombie)
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        """Retrying cannot help: the input or the credentials must change first."""
        return self in _TERMINAL

    @property
    def load_related(self) -> bool:
        """The failure suggests the source is overloaded (used by the throttle)."""
        return self in _LOAD


_TERMINAL = {
    ErrorClass.LOGIN,
    ErrorClass.PERMISSION,
    ErrorClass.MISSING_OBJECT,
    ErrorClass.SYNTAX,
    ErrorClass.DATA,
    ErrorClass.CONFIG,
    ErrorClass.SUPERSEDED,
}
_LOAD = {ErrorClass.TIMEOUT, ErrorClass.DEADLOCK, ErrorClass.THROTTLED, ErrorClass.CONNECTION}

#: SQL Server (and FreeTDS/DB-Library client) message numbers -> class.
SQLSERVER_NUMBERS: dict[int, ErrorClass] = {
    18456: ErrorClass.LOGIN,
    18452: ErrorClass.LOGIN,
    4060: ErrorClass.LOGIN,
    18488: ErrorClass.LOGIN,
    229: ErrorClass.PERMISSION,
    230: ErrorClass.PERMISSION,
    262: ErrorClass.PERMISSION,
    208: ErrorClass.MISSING_OBJECT,
    207: ErrorClass.MISSING_OBJECT,
    2812: ErrorClass.MISSING_OBJECT,
    911: ErrorClass.MISSING_OBJECT,
    102: ErrorClass.SYNTAX,
    156: ErrorClass.SYNTAX,
    105: ErrorClass.SYNTAX,
    170: ErrorClass.SYNTAX,
    1205: ErrorClass.DEADLOCK,
    1222: ErrorClass.DEADLOCK,
    8114: ErrorClass.DATA,
    8115: ErrorClass.DATA,
    245: ErrorClass.DATA,
    241: ErrorClass.DATA,
    220: ErrorClass.DATA,
    8152: ErrorClass.DATA,
    2628: ErrorClass.DATA,
    8134: ErrorClass.DATA,
    40501: ErrorClass.THROTTLED,
    40613: ErrorClass.THROTTLED,
    49918: ErrorClass.THROTTLED,
    10928: ErrorClass.THROTTLED,
    10929: ErrorClass.THROTTLED,
    -2: ErrorClass.TIMEOUT,
    # DB-Library / FreeTDS client-side numbers
    20009: ErrorClass.CONNECTION,
    20002: ErrorClass.CONNECTION,
    20004: ErrorClass.CONNECTION,
    20006: ErrorClass.CONNECTION,
    20017: ErrorClass.CONNECTION,
    20047: ErrorClass.CONNECTION,
    20003: ErrorClass.TIMEOUT,
}

_TEXT_RULES: list[tuple[re.Pattern, ErrorClass]] = [
    (re.compile(r"login failed|password|authentication", re.I), ErrorClass.LOGIN),
    (re.compile(r"deadlock", re.I), ErrorClass.DEADLOCK),
    (re.compile(r"timed? ?out|timeout", re.I), ErrorClass.TIMEOUT),
    (
        re.compile(r"unable to connect|connection (refused|reset)|server is unavailable|broken pipe", re.I),
        ErrorClass.CONNECTION,
    ),
    (re.compile(r"invalid object name|no such table|does not exist|not found", re.I), ErrorClass.MISSING_OBJECT),
    (
        re.compile(r"syntax|more than one statement|multiple (sql )?statements|only one statement", re.I),
        ErrorClass.SYNTAX,
    ),
]


def classify_sqlserver(number: int | None, text: str = "") -> ErrorClass:
    """Class of a SQL Server message number, falling back to its text."""
    if number is not None and number in SQLSERVER_NUMBERS:
        return SQLSERVER_NUMBERS[number]
    return classify_text(text)


def classify_text(text: str) -> ErrorClass:
    for pattern, error_class in _TEXT_RULES:
        if pattern.search(text or ""):
            return error_class
    return ErrorClass.UNKNOWN


def classify_exception(exc: BaseException) -> ErrorClass:
    """Class of a failure that carries none: configuration mistakes are terminal, the rest unknown."""
    try:
        from jinja2 import TemplateError
    except ImportError:  # pragma: no cover (Airflow depends on Jinja2)
        TemplateError = ()  # noqa: N806
    if isinstance(exc, TemplateError):
        return ErrorClass.CONFIG
    return ErrorClass.UNKNOWN


def exception_names(exc: BaseException) -> list[str]:
    """The names a rule's ``exception=`` can give for ``exc``: each class it is an instance of, by name and
    by dotted path (``OperationalError``, ``pymssql.exceptions.OperationalError``, ``Exception``...)."""
    names: list[str] = []
    for cls in type(exc).__mro__[:-1]:  # not object
        for name in (cls.__name__, f"{cls.__module__}.{cls.__qualname__}"):
            if name not in names:
                names.append(name)
    return names


class FluxError(Exception):
    """A classified failure of one step of one data set. Raised as it is by code with no Airflow in it (a
    spec, an identifier, a run's day); an operator raises it as the terminal or transient exception of
    :mod:`flux_provider.errors` that its class calls for (``errors.typed``)."""

    def __init__(
        self,
        message: str,
        *,
        error_class: ErrorClass,
        dataset: str | None = None,
        step: str | None = None,
        server_number: int | None = None,
        exit_code: int | None = None,
        fix: str | None = None,
    ):
        """``message`` says what is wrong, ``fix`` what to do (kept apart for readers that word their own)."""
        self.error_class = ErrorClass(error_class)
        self.message, self.fix = message, fix
        self.dataset, self.step = dataset, step
        self.server_number, self.exit_code = server_number, exit_code
        where = " ".join(part for part in (f"data set {dataset!r}" if dataset else "", step or "") if part)
        prefix = f"[{self.error_class.value}] " + (f"{where}: " if where else "")
        super().__init__(prefix + message + (f"; {fix}" if fix else ""))

    @property
    def terminal(self) -> bool:
        return self.error_class.terminal

    def as_dict(self) -> dict:
        return ErrorRecord.of(self).to_json()


@dataclass(frozen=True)
class Decision(Record):
    """What the recovery rules decided for one failed try: the ``recovery`` of its :class:`ErrorRecord`."""

    KIND = "flux.decision"
    TAGGED = False  # versioned by the record it is in

    action: Literal["retry", "fail", "skip"]
    rule: str  # the rule's name, or "rule N"
    reason: str
    delay_seconds: float | None = None  # until the next try (a retry)
    alert: bool = False
    throttle_down: float | None = None  # the pool's cut factor, when the rule throttles down
    extra: dict = field(default_factory=dict)


#: The XCom key of a failed try's :class:`ErrorRecord` (read by the throttle controller and the dashboard).
ERROR_XCOM = "flux_error"


@dataclass(frozen=True)
class ErrorRecord(Record):
    """One failed try, classified, with what the recovery rules decided (``recovery``). Stored as the XCom
    ``flux_error`` of the try."""

    KIND = "flux.error"
    NESTED = {"recovery": Decision}

    error_class: str = ErrorClass.UNKNOWN.value
    terminal: bool = False
    message: str = ""
    dataset: str | None = None
    step: str | None = None
    server_number: int | None = None
    exit_code: int | None = None
    recovery: Decision | None = None
    exception: list[str] = field(default_factory=list)  # its class names, for a rule's exception= (exception_names)
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, exc: BaseException, *, dataset: str | None = None, step: str | None = None) -> ErrorRecord:
        """The record of ``exc``: its own classification if it is a :class:`FluxError`, else by its type."""
        if isinstance(exc, FluxError):
            return cls(
                error_class=exc.error_class.value,
                terminal=exc.terminal,
                message=str(exc),
                dataset=exc.dataset,
                step=exc.step,
                server_number=exc.server_number,
                exit_code=exc.exit_code,
                exception=exception_names(exc),
            )
        error_class = classify_exception(exc)
        return cls(
            error_class=error_class.value,
            terminal=error_class.terminal,
            message=f"{type(exc).__name__}: {exc}"[:2000],
            dataset=dataset,
            step=step,
            exception=exception_names(exc),
        )

    def decided(self, recovery: Decision) -> ErrorRecord:
        return replace(self, recovery=recovery)
