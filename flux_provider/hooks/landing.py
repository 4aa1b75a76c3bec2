"""Landing retention's S3 side: a data set's generations under ``runs/``, the published one, and removing
those the rule (:mod:`flux_provider.retention`) gives up."""

from __future__ import annotations

import datetime as dt
import logging

from flux_provider.formats.hive_refresh import drop_generations
from flux_provider.retention import Landing, LandingOutcome, LandingRule, LandingRun, to_remove
from flux_provider.s3_layout import DatasetLayout, parse_s3_url

log = logging.getLogger(__name__)

#: S3's DeleteObjects limit.
DELETE_BATCH = 1000


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
            complete=layout.generation(name).manifest_key in {o["Key"] for o in objs},
        )
        for name, objs in sorted(found.items())
    ]


def published_run(client, bucket: str, location: str) -> str | None:
    """The generation the data set's pointer names, or None when nothing is published."""
    from flux_provider.hooks.run_store import RunStore

    store = RunStore(client, DatasetLayout(bucket, location))
    pointer = store.pointer()[0]
    return store.layout.generation_of(pointer.manifest) if pointer else None


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


def prune(where: Landing, hive, own_run: str | None, *, aws_conn_id: str | None, dataset: str | None):
    """Apply a data set's landing rule once a run's load is done: drop the raw staging table's partitions of
    the generations it removes (through ``hive``, a session), then their objects; keep ``own_run`` and the
    published one. Never raises: housekeeping never fails a load that did its work, and what is left waits
    for the next run (the outcome says why)."""
    from flux_provider.hooks.s3_client import s3_client

    try:
        bucket, location = parse_s3_url(where.s3_location)
        client = s3_client(aws_conn_id)
        runs = landing_runs(client, bucket, location)
        keep = {own_run, published_run(client, bucket, location)} - {None}
        doomed = to_remove(runs, where.rule, keep, dt.datetime.now(dt.timezone.utc))
        objects = 0
        if doomed:
            what = f"drop {len(doomed)} landed run(s) from {where.raw_table}"
            hive.execute(drop_generations(where.raw_table, [r.name for r in doomed]), what=what)
            objects = remove(client, bucket, doomed)
    except Exception as exc:  # boto and the session raise many types; none may fail the load
        log.warning("data set %s: landing retention left for the next run: %s", dataset, exc)
        return LandingOutcome(error=str(exc)[:500])
    freed, kept = sum(r.bytes for r in doomed), len(runs) - len(doomed)
    log.info(
        "data set %s: landing retention (keep %d runs, %g days): removed %d run(s), %d objects, %.1f MB; %d kept",
        *(dataset, where.rule.keep_runs, where.rule.keep_days, len(doomed), objects, freed / 1e6, kept),
    )
    return LandingOutcome(removed=[r.name for r in doomed], objects=objects, bytes=freed, kept=kept)


__all__ = [
    "Landing",
    "LandingRule",
    "LandingRun",
    "landing_runs",
    "prune",
    "published_run",
    "remove",
    "to_remove",
]
