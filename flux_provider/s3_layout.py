"""Where a data set's objects live in S3: one object that every step asks, instead of building keys.

Under a data set's location ``s3://bucket/prefix``::

    runs/<generation>/part-00000.hive[.gz]   chunks (immutable once the run is complete)
    runs/<generation>/p03-00000.hive.gz      chunks of part p03 of a split run
    runs/<generation>/_parts/p03.json        part p03 is complete (a split run)
    runs/<generation>/_manifest.json         the run is complete: written last
    _published.json                          the pointer: which run is current

A generation is ``<run_key>`` for a run's first complete upload, then
``<run_key>.1``, ``<run_key>.2``, ... (a complete run is never rewritten). Hive
skips ``_``-prefixed files and folders, so the raw table over ``runs/`` reads only
chunks. Pure: no Airflow, no client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

MANIFEST = "_manifest.json"
POINTER = "_published.json"
PARTS = "_parts/"
RUNS = "runs/"


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://`` (or ``s3a://``, ``s3n://``) URL; ValueError names what is wrong."""
    parts = urlsplit(url, allow_fragments=False) if isinstance(url, str) else None
    if parts is None or parts.scheme.lower() not in ("s3", "s3a", "s3n"):
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    if not parts.netloc:
        raise ValueError(f"{url!r} has no bucket: give s3://bucket/prefix")
    return parts.netloc, parts.path.lstrip("/")


def run_key_for(run_id: str) -> str:
    """The S3 key part of an Airflow run id."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", run_id).strip("._") or "run"


@dataclass(frozen=True)
class DatasetLayout:
    """A data set's location: its bucket and the prefix everything of it is under."""

    bucket: str
    location: str  # no leading or trailing slash; "" for the bucket's root

    def __post_init__(self):
        object.__setattr__(self, "location", self.location.strip("/"))

    @classmethod
    def from_url(cls, url: str) -> DatasetLayout:
        return cls(*parse_s3_url(url))

    def key(self, relative: str) -> str:
        return f"{self.location}/{relative}" if self.location else relative

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.location}"

    @property
    def pointer_key(self) -> str:
        return self.key(POINTER)

    @property
    def runs_prefix(self) -> str:
        return self.key(RUNS)

    def generation(self, run_key: str, number: int = 0) -> Generation:
        """Generation ``number`` of the Airflow run ``run_key`` (0 is the run key itself)."""
        return Generation(self, run_key if number == 0 else f"{run_key}.{number}")

    def generation_at(self, prefix: str) -> Generation:
        """The generation whose prefix is ``prefix`` (as a manifest or a plan recorded it)."""
        name = prefix.rstrip("/")[len(self.runs_prefix) :]
        if not prefix.startswith(self.runs_prefix) or not name or "/" in name:
            raise ValueError(f"{prefix!r} is not a run under s3://{self.bucket}/{self.runs_prefix}")
        return Generation(self, name)

    @staticmethod
    def generation_in(bucket: str, prefix: str) -> Generation:
        """The generation at ``prefix`` (``<location>/runs/<generation>/``), as a manifest records it."""
        head, _, name = prefix.rstrip("/").rpartition("/")
        location, _, runs = head.rpartition("/")
        if runs + "/" != RUNS or not name:
            raise ValueError(f"s3://{bucket}/{prefix} is not a run: runs are <location>/runs/<generation>/")
        return Generation(DatasetLayout(bucket, location), name)

    run, run_at, run_of = generation, generation_at, generation_in  # deprecated names (1.0)

    def generation_of(self, key: str) -> str | None:
        """The generation a key under ``runs/`` belongs to, else None."""
        if not key.startswith(self.runs_prefix):
            return None
        return key[len(self.runs_prefix) :].split("/", 1)[0] or None


@dataclass(frozen=True)
class Generation:
    """One generation of an Airflow run's upload in S3 (``runs/<generation>/``): its prefix and the keys of its
    chunks, part manifests and manifest."""

    dataset: DatasetLayout
    name: str  # the generation: "<run_key>" or "<run_key>.<n>"

    @property
    def bucket(self) -> str:
        return self.dataset.bucket

    @property
    def prefix(self) -> str:
        return f"{self.dataset.runs_prefix}{self.name}/"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def manifest_key(self) -> str:
        return self.prefix + MANIFEST

    @property
    def parts_prefix(self) -> str:
        return self.prefix + PARTS

    def part_manifest_key(self, part: str) -> str:
        return f"{self.parts_prefix}{part}.json"

    def chunk_prefix(self, part: str | None) -> str:
        """The prefix of this run's chunks of ``part`` (``part-`` for a run that is not split)."""
        return f"{self.prefix}{part or 'part'}-"

    def chunk_key(self, part: str | None, index: int, extension: str) -> str:
        return f"{self.chunk_prefix(part)}{index:05d}{extension}"


#: Deprecated name (1.0) of :class:`Generation`, as ``DatasetLayout.run``, ``run_at`` and ``run_of`` are of
#: ``generation``, ``generation_at`` and ``generation_in``.
RunLayout = Generation

__all__ = ["DatasetLayout", "Generation", "RunLayout", "parse_s3_url", "run_key_for", "MANIFEST", "POINTER"]
