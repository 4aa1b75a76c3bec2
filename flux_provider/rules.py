"""A data set's recovery rules as data: what a rule matches and the actions it takes.

Pure: the spec parser builds these without loading Airflow's task machinery (:mod:`flux_provider.recovery` runs them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from flux_provider.error_taxonomy import ErrorRecord


@dataclass(frozen=True)
class Match:
    error_class: str | None = None
    number: int | None = None
    exit_code: int | None = None
    message: str | None = None  # a regular expression
    step: str | None = None
    exception: str | None = None  # an exception type's name or dotted path, the raised one's or a base's


@dataclass(frozen=True)
class Retry:
    """Try again after ``delay_seconds * backoff ** (try - 1)`` (at most ``max_delay_seconds``, +-20% with
    ``jitter``) while the try number is at most ``count``; then the task fails."""

    count: int = 0
    delay_seconds: float = 60
    backoff: float = 1
    max_delay_seconds: float | None = None
    jitter: bool = False
    kind: ClassVar[str] = "retry"


@dataclass(frozen=True)
class ThrottleDown:
    """Ask the throttle controller to cut the data set's pool to ``floor(slots * factor)``."""

    factor: float = 0.5
    kind: ClassVar[str] = "throttle_down"


@dataclass(frozen=True)
class Fail:
    """No more tries."""

    kind: ClassVar[str] = "fail"


@dataclass(frozen=True)
class Skip:
    """The task is skipped, with ``reason``."""

    reason: str = "skipped by a recovery rule"
    kind: ClassVar[str] = "skip"


@dataclass(frozen=True)
class Alert:
    """Notify the spec's ``<alerts>``."""

    kind: ClassVar[str] = "alert"


Action = Retry | ThrottleDown | Fail | Skip | Alert
#: The spec's element -> the action it makes, and its attributes -> the action's fields.
ELEMENTS: dict[str, tuple[type, dict[str, str]]] = {
    "retry": (
        Retry,
        {
            "count": "count",
            "delaySeconds": "delay_seconds",
            "backoff": "backoff",
            "maxDelaySeconds": "max_delay_seconds",
            "jitter": "jitter",
        },
    ),
    "throttleDown": (ThrottleDown, {"factor": "factor"}),
    "fail": (Fail, {}),
    "skip": (Skip, {"reason": "reason"}),
    "alert": (Alert, {}),
}


@dataclass(frozen=True)
class Rule:
    match: Match
    actions: tuple[Action, ...]
    name: str | None = None
    line: int | None = None


DEFAULT_RULES = (
    Rule(
        match=Match(),
        actions=(Retry(count=5, delay_seconds=60), Alert()),
        name="default: 5 retries a minute apart, then fail and alert",
    ),
)


def max_retries(rules) -> int:
    """What Airflow's ``retries`` must allow for every retry of ``rules`` and of the default rule."""
    return max(a.count for r in (*rules, *DEFAULT_RULES) for a in r.actions if isinstance(a, Retry))


def matches(match: Match, record: ErrorRecord) -> bool:
    checks = [
        (match.error_class, record.error_class),
        (match.number, record.server_number),
        (match.exit_code, record.exit_code),
        (match.step, record.step),
    ]
    if any(want is not None and want != got for want, got in checks):
        return False
    if match.exception is not None and match.exception not in (record.exception):
        return False
    return match.message is None or re.search(match.message, record.message or "") is not None


__all__ = [
    "DEFAULT_RULES",
    "ELEMENTS",
    "Action",
    "Alert",
    "Fail",
    "Match",
    "Retry",
    "Rule",
    "Skip",
    "ThrottleDown",
    "matches",
    "max_retries",
]
