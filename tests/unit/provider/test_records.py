"""The typed records and the S3 layout: one JSON form each, versioned, unknown keys kept; keys built in one place."""

from __future__ import annotations

import json

import pytest

from flux_provider.errors import ErrorRecord
from flux_provider.handoffs import ExportResult, UploadResult
from flux_provider.records import RecordError
from flux_provider.run_records import Chunk, Manifest, PartManifest, PartSummary, Pointer
from flux_provider.s3_layout import DatasetLayout
from flux_provider.splits import Part


def manifest() -> Manifest:
    chunks = [
        Chunk(key="d/runs/r/part-00001.hive", rows=2, bytes=20, raw_bytes=40, crc32="0000000b"),
        Chunk(key="d/runs/r/part-00000.hive", rows=3, bytes=30, raw_bytes=60, crc32="0000000a"),
    ]
    return Manifest.summing(
        "b",
        "d/runs/r/",
        chunks,
        run_key="r",
        day="2026-12-01",
        attempt=2,
        parts=[PartSummary(part="p00", rows=5, chunks=2, source={"tool": "freebcp"})],
    )


@pytest.mark.parametrize(
    "record",
    [
        manifest(),
        PartManifest.summing("b", "d/runs/r/", [Chunk(key="k", rows=1)], part="p00", run_key="r"),
        Pointer.to(manifest()),
        Part(name="p00", sql="SELECT 1", prefix="d/runs/r/"),
        UploadResult(dataset="d", rows=5, export=ExportResult(dataset="d", rows=5, columns=[{"name": "a"}])),
        ErrorRecord(error_class="deadlock", terminal=False, message="victim", recovery={"action": "retry"}),
    ],
    ids=lambda r: type(r).__name__,
)
def test_every_record_reads_back_what_it_wrote_through_json_text(record):
    text = json.dumps(record.to_json())
    assert type(record).from_json(text) == record
    assert type(record).from_json(None) is None


def test_a_manifest_sums_its_chunks_sorted_and_stores_the_try_as_try():
    stored = manifest().to_json()
    assert stored["format"] == "flux-hive-text/1" and stored["try"] == 2 and "attempt" not in stored
    assert [c["key"] for c in stored["chunks"]] == ["d/runs/r/part-00000.hive", "d/runs/r/part-00001.hive"]
    assert (stored["rows"], stored["bytes"], stored["raw_bytes"]) == (5, 50, 100)
    assert "format" not in stored["chunks"][0] and "record" not in stored["parts"][0]  # nested: the outer tag
    assert stored["location"] == "s3://b/d/runs/r/"
    assert Pointer.to(manifest()).to_json()["manifest"] == "d/runs/r/_manifest.json"


def test_unknown_keys_survive_a_read_and_a_write_and_an_untagged_value_is_version_1():
    written = {**manifest().to_json(), "written_by": "flux 9", "chunks": [{"key": "k", "rows": 1, "etag": "x"}]}
    again = Manifest.from_json(written).to_json()
    assert again["written_by"] == "flux 9" and again["chunks"][0]["etag"] == "x"
    older = {"run_key": "r", "prefix": "d/runs/r/", "manifest": "d/runs/r/_manifest.json", "rows": 3, "try": 1}
    assert Pointer.from_json(older).attempt == 1  # a pointer written before pointers had a format


def test_another_kind_or_a_newer_version_is_refused_with_what_to_do():
    with pytest.raises(RecordError, match="not a 'flux-pointer/1'"):
        Pointer.from_json(manifest().to_json())
    with pytest.raises(RecordError, match="newer flux_provider.*Upgrade"):
        Manifest.from_json({**manifest().to_json(), "format": "flux-hive-text/2"})
    with pytest.raises(RecordError, match="expected a JSON object"):
        UploadResult.from_json([1, 2])


def test_the_layout_builds_every_key_of_a_data_set_and_finds_the_run_of_a_prefix():
    layout = DatasetLayout("flux", "/media/titles/")
    assert layout.location == "media/titles" and layout.pointer_key == "media/titles/_published.json"
    run = layout.run("manual__x", 2)
    assert run.prefix == "media/titles/runs/manual__x.2/" and run.manifest_key.endswith(
        "runs/manual__x.2/_manifest.json"
    )
    assert run.part_manifest_key("p03") == "media/titles/runs/manual__x.2/_parts/p03.json"
    assert run.chunk_key("p03", 7, ".hive.gz") == "media/titles/runs/manual__x.2/p03-00007.hive.gz"
    assert run.chunk_key(None, 0, ".hive") == "media/titles/runs/manual__x.2/part-00000.hive"
    assert layout.run_at(run.prefix) == run == DatasetLayout.run_of("flux", run.prefix)
    assert layout.generation_of(run.chunk_key(None, 0, ".hive")) == "manual__x.2"
    assert layout.generation_of("media/titles/_published.json") is None
    root = DatasetLayout("flux", "")
    assert root.pointer_key == "_published.json" and root.run("r").prefix == "runs/r/"
    for wrong in ("media/titles/r/", "media/titles/runs/"):
        with pytest.raises(ValueError):
            layout.run_at(wrong)


def test_urls_are_parsed_by_airflow_with_a_clear_error():
    assert DatasetLayout.from_url("s3://flux/media/titles/") == DatasetLayout("flux", "media/titles")
    assert DatasetLayout.from_url("s3a://flux/x").location == "x"
    for wrong in ("flux/x", "s3://"):
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            DatasetLayout.from_url(wrong)
