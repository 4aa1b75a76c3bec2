"""A data set's recovery rules as data: what a rule matches and the actions it takes.

Pure: the spec parser builds these without loading Airflow's task machinery (:mod:`flux_provider.recovery` runs them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flux_provider.errors import ErrorRecord


@dataclass(frozen=True)
class Match:
    error_class: str | None = None
    number: int | None = None
    exit_code: int | None = None
    message: str | None = None  # a regular expression
    step: str | None = None


@dataclass(frozen=True)
class Action:
    kind: str  # retry, throttle_down, fail, skip, alert
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    match: Match
    actions: tuple[Action, ...]
    name: str | None = None
    line: int | None = None


DEFAULT_RULES = (
    Rule(
        match=Match(),
        actions=(Action("retry", {"count": 5, "delaySeconds": 60}), Action("alert")),
        name="default: 5 retries a minute apart, then fail and alert",
    ),
)


def matches(match: Match, record: ErrorRecord) -> bool:
    checks = [
        (match.error_class, record.error_class),
        (match.number, record.server_number),
        (match.exit_code, record.exit_code),
        (match.step, record.step),
    ]
    if any(want is not None and want != got for want, got in checks):
        return False
    return match.message is None or re.search(match.message, record.message or "") is not None


__all__ = ["DEFAULT_RULES", "Action", "Match", "Rule", "matches"]
