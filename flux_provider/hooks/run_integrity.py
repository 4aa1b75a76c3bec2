"""Is a published run still what its manifest says? A zombie try's late chunk would change it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from flux_provider.hooks.run_store import RunStore
from flux_provider.run_records import Manifest
from flux_provider.s3_layout import DatasetLayout


def changed_since_published(client, manifest: Manifest, *, workers: int = 8) -> list[str]:
    """What under a published run's prefix differs from its manifest: a chunk missing, resized or rewritten
    (its ``flux-crc32``), or an object no chunk lists that Hive would read. A try that Airflow gave up (a
    zombie) stops at its next chunk once its successor published, but a chunk it had in flight still lands.
    Empty when the run is intact. One LIST and one HEAD per chunk."""
    prefix = manifest.prefix
    chunks = {c.key: c for c in manifest.chunks}
    found = RunStore(client, DatasetLayout(manifest.bucket, "")).sizes(prefix)
    problems, sized = [], []
    for key, chunk in chunks.items():
        if key not in found:
            problems.append(f"{key} is missing")
        elif found[key] != chunk.bytes:
            problems.append(f"{key} has {found[key]} bytes, the manifest {chunk.bytes}")
        else:
            sized.append(key)
    problems += [f"{key} is not in the manifest" for key in found if key not in chunks and not _hidden(key, prefix)]

    def crc32(key: str) -> str | None:
        return client.head_object(Bucket=manifest.bucket, Key=key).get("Metadata", {}).get("flux-crc32")

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-check") as pool:
        for key, found_crc in zip(sized, pool.map(crc32, sized)):
            if found_crc != chunks[key].crc32:
                problems.append(f"{key} was rewritten (CRC32 {found_crc}, the manifest {chunks[key].crc32})")
    return problems


def _hidden(key: str, prefix: str) -> bool:
    """A key under the run that Hive does not read (a ``_`` or ``.`` file or folder)."""
    return any(p.startswith(("_", ".")) for p in key[len(prefix) :].split("/"))


__all__ = ["changed_since_published"]
