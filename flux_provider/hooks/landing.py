"""Landing retention's S3 side: a data set's generations under ``runs/``, the published one, and removing
those the rule (:mod:`flux_provider.retention`) gives up."""

from __future__ import annotations

from flux_provider.retention import Landing, LandingRule, LandingRun, to_remove
from flux_provider.s3_layout import DatasetLayout

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


__all__ = ["Landing", "LandingRule", "LandingRun", "landing_runs", "published_run", "remove", "to_remove"]
