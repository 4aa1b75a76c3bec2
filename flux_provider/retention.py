"""Landing retention's rule: which run generations under a data set's ``runs/`` are removed (pure: the S3
side is :mod:`flux_provider.hooks.landing`).

Every upload writes a whole generation (``runs/<run key>/``, ``runs/<run key>.1/`` for a rerun, ...) and the
raw staging table keeps a ``flux_run`` partition for each. The rule (``<s3 keepRuns= keepDays=>``) keeps:

* the published run (the pointer's) and the run the caller just loaded;
* the newest ``keep_runs`` complete runs (those with a manifest);
* every generation written to within ``keep_days`` days: a try in flight, or one a retry may resume or read.

Everything else is removed: first its raw-table partition (by the caller, in Hive), then its objects. A try
Airflow gave up (a zombie) that still writes into a removed generation publishes nothing a reader accepts: the
transform refuses a run whose chunks changed after it was published.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from flux_provider.records import Record


@dataclass(frozen=True)
class LandingRule:
    """How much of a data set's landing zone outlives its runs (see the module)."""

    keep_runs: int = 2
    keep_days: float = 3.0

    def __post_init__(self):
        if self.keep_runs < 1 or self.keep_days < 0:
            raise ValueError(f"keep_runs must be >= 1 and keep_days >= 0, got {self.keep_runs}, {self.keep_days}")


@dataclass(frozen=True)
class Landing:
    """Where a data set lands and its rule: what the last task of its DAG prunes once the run is loaded."""

    s3_location: str  # s3://bucket/prefix
    raw_table: str  # the raw staging table, quoted (`db`.`t_raw`)
    rule: LandingRule = LandingRule()


@dataclass(frozen=True)
class LandingRun:
    """One generation folder under ``runs/``: the raw staging table's ``flux_run`` partition of the same name."""

    name: str
    keys: tuple[str, ...]
    bytes: int
    newest: dt.datetime  # its last write
    complete: bool  # it has its manifest


def to_remove(runs: list[LandingRun], rule: LandingRule, keep: set[str], now: dt.datetime) -> list[LandingRun]:
    """The generations the rule removes (see the module): a pure decision."""
    newest_complete = sorted((r for r in runs if r.complete), key=lambda r: r.newest, reverse=True)
    kept = set(keep) | {r.name for r in newest_complete[: rule.keep_runs]}
    young = dt.timedelta(days=rule.keep_days)
    return [r for r in runs if r.name not in kept and now - r.newest >= young]


@dataclass(frozen=True)
class LandingOutcome(Record):
    """What a load's landing retention did: the generations it removed, their objects and bytes, how many it
    kept; or why it left them for the next run (``skipped``: other runs were running; ``error``)."""

    KIND = "flux.landing-outcome"
    TAGGED = False  # versioned by the record it is in

    removed: list[str] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0
    kept: int = 0
    skipped: str | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)
