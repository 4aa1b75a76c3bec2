"""Publish a split run once every part is complete: one manifest of all parts' chunks, then the pointer.

Every planned part must have written its part manifest, and all must agree on
columns, encoding and compression. Objects under the run that no part lists
(chunks of an earlier plan with other parts) are deleted first, and
``before_publish(part_manifests)`` (the row-count check) may still refuse.
Anything wrong raises before a manifest or the pointer is written.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from flux_provider.errors import ErrorClass, FluxError
from flux_provider.hooks.run_store import RunStore
from flux_provider.hooks.s3_errors import classify_s3
from flux_provider.run_records import Manifest, PartManifest, PartSummary
from flux_provider.s3_layout import Generation

log = logging.getLogger(__name__)

#: What every part of a run must agree on.
AGREED = ("columns", "encoding", "compression")


def publish_parts(
    store: RunStore,
    run: Generation,
    parts: list[str],
    *,
    before_publish: Callable[[list[PartManifest]], None] | None = None,
    day: str | None = None,
    attempt: int | None = None,
) -> Manifest:
    """Publish ``run`` from the manifests of ``parts`` (see the module); returns the run's manifest."""
    try:
        done = store.manifest(run)
        store.refuse_if_superseded(run, run.name, attempt, done)
        if done is not None:
            return _finish_earlier_try(store, run, parts, done, attempt)
        manifests = _part_manifests(store, run, parts)
        if before_publish is not None:
            before_publish(manifests)
        manifest = _manifest_of(run, manifests, dataset=store.dataset, day=day, attempt=attempt)
        _delete_unlisted(store, run, manifest)
        store.put(run.manifest_key, manifest)
        store.point(manifest)
    except FluxError:
        raise
    except Exception as exc:  # classified
        raise store.fail(f"publishing {run.url}: {exc}", classify_s3(exc)) from exc
    return manifest


def _finish_earlier_try(store: RunStore, run: Generation, parts: list[str], done: Manifest, attempt) -> Manifest:
    """An earlier try of this task published the run and died before reporting: point at it."""
    if [p.part for p in done.parts or []] != list(parts):
        raise store.fail(
            f"{run.url} is already published with other parts; clear the plan task to load the run again",
            ErrorClass.CONFIG,
        )
    log.info("%s was published by an earlier try: pointing at it", run.url)
    store.point(dataclasses.replace(done, attempt=attempt))
    return done


def _part_manifests(store: RunStore, run: Generation, parts: list[str]) -> list[PartManifest]:
    manifests = []
    for part in parts:
        manifest = store.part_manifest(run, part)
        if manifest is None:
            raise store.fail(
                f"part {part} has no manifest at s3://{run.bucket}/{run.part_manifest_key(part)}: it did not "
                "complete; clear its task (and this one) to run it again",
                ErrorClass.MISSING_OBJECT,
            )
        manifests.append(manifest)
    if not manifests:
        raise store.fail("the plan has no parts: nothing to publish", ErrorClass.CONFIG)
    first = manifests[0]
    for other in manifests[1:]:
        for name in AGREED:
            if getattr(other, name) != getattr(first, name):
                raise store.fail(
                    f"parts {first.part} and {other.part} disagree on their {name}: every part of a run must "
                    "return the same columns, encoded the same way. Make the data set's queries select the same "
                    "columns",
                    ErrorClass.DATA,
                )
    return manifests


def _manifest_of(run: Generation, manifests: list[PartManifest], **fields) -> Manifest:
    first = manifests[0]
    return Manifest.summing(
        run.bucket,
        run.prefix,
        [c for m in manifests for c in m.chunks],
        run_key=run.name,
        columns=first.columns,
        encoding=first.encoding,
        compression=first.compression,
        parts=[PartSummary(part=m.part, rows=m.rows, chunks=len(m.chunks), source=m.source) for m in manifests],
        **fields,
    )


def _delete_unlisted(store: RunStore, run: Generation, manifest: Manifest) -> None:
    keep = {c.key for c in manifest.chunks}
    stale = [k for k in store.sizes(run.prefix) if k not in keep and not k.startswith(run.parts_prefix)]
    store.delete(stale)
    if stale:
        log.info("deleted %d objects under %s that no part of this run lists", len(stale), run.prefix)


__all__ = ["publish_parts"]
