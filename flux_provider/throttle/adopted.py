"""Any Airflow pool, adaptive: a person adopts a pool and the controller drives it from the tries of
whatever operators run in it (``SQLExecuteQueryOperator``, ``HttpOperator``, ...), as it drives a data set's.

An adopted pool is a row of ``flux_throttle`` named after the pool, with its bounds, its limit
(``gradient`` or ``aimd``), its load classes and its error rules (``rules``, JSON). A failed try of a task
that is not flux's leaves its exception as the XCom ``flux_error`` (the plugin's listener, in the task's
process); the controller gives it the class of the first rule that matches, else ``unknown``, which is
not load. Latency is the try's duration (stock operators do not report the source's time to first row).

A rule is written ``CLASS: ATTRIBUTE=VALUE ...`` with the attributes of a spec's ``<match>``::

    deadlock: exception=OperationalError message="(?i)deadlock victim"
    timeout: exception=requests.exceptions.Timeout
    throttled: message="429 Too Many Requests"
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from sqlalchemy import select

from flux_provider.errors import ErrorClass, ErrorRecord
from flux_provider.rules import Match, matches
from flux_provider.throttle import sources, store
from flux_provider.throttle.limits import ALGORITHMS

#: ``<match>``'s attributes a pool rule takes (a stock operator's error has no bcp exit code or flux step).
ATTRIBUTES = {"exception": "exception", "message": "message", "number": "number"}


class RuleError(ValueError):
    """A pool rule that cannot be read; the message says which and how to write it."""


@dataclass(frozen=True)
class PoolRule:
    error_class: str
    match: Match
    text: str  # as written

    @classmethod
    def parse(cls, text: str) -> PoolRule:
        head, colon, tail = text.partition(":")
        error_class = head.strip()
        example = 'deadlock: exception=OperationalError message="(?i)deadlock victim"'
        if not colon or error_class not in {c.value for c in ErrorClass}:
            raise RuleError(
                f"pool rule {text!r}: start with an error class and a colon "
                f"({', '.join(c.value for c in ErrorClass)}), e.g. {example}"
            )
        try:
            words = shlex.split(tail)
        except ValueError as exc:
            raise RuleError(f"pool rule {text!r}: {exc}; quote values with spaces") from None
        fields: dict = {}
        for word in words:
            name, equals, value = word.partition("=")
            if not equals or name not in ATTRIBUTES:
                raise RuleError(f"pool rule {text!r}: {word!r} is not one of {', '.join(ATTRIBUTES)}=VALUE")
            fields[ATTRIBUTES[name]] = value
        if not fields:
            raise RuleError(f"pool rule {text!r} matches every error: give at least one of {', '.join(ATTRIBUTES)}")
        if "message" in fields:
            try:
                re.compile(fields["message"])
            except re.error as exc:
                raise RuleError(f"pool rule {text!r}: message is not a regular expression ({exc})") from None
        if "number" in fields:
            if not re.fullmatch(r"-?\d+", fields["number"]):
                raise RuleError(f"pool rule {text!r}: number={fields['number']!r} is not an integer")
            fields["number"] = int(fields["number"])
        return cls(error_class, Match(**fields), text.strip())


def rules_to_json(rules: list[PoolRule]) -> str:
    return json.dumps([r.text for r in rules])


def rules_from_json(text: str | None) -> list[PoolRule]:
    return [PoolRule.parse(t) for t in json.loads(text)] if text else []


def classify(rules: list[PoolRule], record: ErrorRecord) -> tuple[str, str] | None:
    """(class, rule) of the first rule that matches ``record``; None when none does."""
    for rule in rules:
        if matches(rule.match, record):
            return rule.error_class, rule.text
    return None


def adopt(
    session,
    pool: str,
    *,
    low: int,
    high: int,
    algorithm: str = "gradient",
    load_classes: list[str] | None = None,
    rules: list[str] | None = None,
    source: str | None = None,
    connection: str | None = None,
    actor: str,
) -> dict:
    """Make ``pool`` adaptive within [low, high] (its slots are kept, brought inside the bounds), inside the
    budget of ``source`` when given (read through ``connection``, or the one the source already has).
    Adopting it again changes its settings. Raises KeyError for a missing pool, ValueError for bad settings."""
    from airflow.models.pool import Pool

    parsed = [PoolRule.parse(r) for r in rules or ()]
    if algorithm not in ALGORITHMS:
        raise ValueError(f"no limit {algorithm!r}: choose one of {', '.join(sorted(ALGORITHMS))}")
    if not 0 <= low <= high or high < 1:
        raise ValueError(f"the bounds do not hold: 0 <= min {low} <= max {high}, max >= 1")
    unknown = sorted(set(load_classes or ()) - {c.value for c in ErrorClass})
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not error classes ({', '.join(c.value for c in ErrorClass)})")
    row = session.execute(select(store.throttle).where(store.throttle.c.pool == pool)).mappings().first()
    if row is not None and row["rules"] is None:
        raise ValueError(f"pool {pool!r} is data set {row['dataset']!r}'s: its spec's <throttle> sets it")
    target = session.execute(select(Pool).where(Pool.pool == pool)).scalar_one_or_none()
    if target is None:
        raise KeyError(pool)
    old = target.slots
    slots = min(max(old, low), high)
    store.upsert_dataset(
        session,
        pool,
        pool,
        low,
        high,
        slots,
        ",".join(load_classes) if load_classes else None,
        None,
        algorithm,
        rules_to_json(parsed),
        source=source,
    )
    if source:
        sources.register(session, source, connection)
    target.slots = slots
    store.record_event(session, pool, old, slots, f"adopted by {actor}: {algorithm} within {low}-{high}", actor)
    return {
        "pool": pool,
        "slots": slots,
        "previous": old,
        "bounds": [low, high],
        "algorithm": algorithm,
        "rules": [r.text for r in parsed],
        "source": source,
    }


def release(session, pool: str, *, actor: str) -> None:
    """The controller stops adapting ``pool`` (its slots stay as they are). KeyError if it was not adopted."""
    row = session.execute(select(store.throttle).where(store.throttle.c.pool == pool)).mappings().first()
    if row is None or row["rules"] is None:
        raise KeyError(pool)
    session.execute(store.throttle.delete().where(store.throttle.c.dataset == row["dataset"]))
    store.record_event(session, row["dataset"], None, None, f"released by {actor}", actor)
