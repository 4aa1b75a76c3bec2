"""Landing retention: which run generations under a data set's ``runs/`` are removed, and removing them.

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
from dataclasses import dataclass

from flux_provider.s3_layout import DatasetLayout

#: S3's DeleteObjects limit.
DELETE_BATCH = 1000


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


def landing_runs(client, bucket: str, location: str) -> list[LandingRun]:
    """Every generation under ``s3://bucket/location/runs/``."""
    layout = DatasetLayout(bucket, location)
    found: dict[str, list[dict]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.runs_prefix):
        for obj in page.get("Contents", []):
            found.setdefault(layout.generation_of(obj["Key"]), []).append(obj)
    return [
        LandingRun(
            name=name,
            keys=tuple(o["Key"] for o in objs),
            bytes=sum(o["Size"] for o in objs),
            newest=max(o["LastModified"] for o in objs),
            complete=layout.run(name).manifest_key in {o["Key"] for o in objs},
        )
        for name, objs in sorted(found.items())
    ]


def published_run(client, bucket: str, location: str) -> str | None:
    """The generation the data set's pointer names, or None when nothing is published."""
    from flux_provider.hooks.run_store import RunStore

    store = RunStore(client, DatasetLayout(bucket, location))
    pointer = store.pointer()[0]
    return store.layout.generation_of(pointer.manifest) if pointer else None


def to_remove(runs: list[LandingRun], rule: LandingRule, keep: set[str], now: dt.datetime) -> list[LandingRun]:
    """The generations the rule removes (see the module): a pure decision."""
    newest_complete = sorted((r for r in runs if r.complete), key=lambda r: r.newest, reverse=True)
    kept = set(keep) | {r.name for r in newest_complete[: rule.keep_runs]}
    young = dt.timedelta(days=rule.keep_days)
    return [r for r in runs if r.name not in kept and now - r.newest >= young]


def remove(client, bucket: str, runs: list[LandingRun]) -> int:
    """Delete the objects of ``runs``; returns how many. Raises on any object S3 did not delete."""
    keys = [key for run in runs for key in run.keys]
    for start in range(0, len(keys), DELETE_BATCH):
        batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
        answer = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise RuntimeError(
                f"S3 did not delete {len(answer['Errors'])} object(s) of s3://{bucket}: {first.get('Key')}: "
                f"{first.get('Code')} {first.get('Message')}"
            )
    return len(keys)
