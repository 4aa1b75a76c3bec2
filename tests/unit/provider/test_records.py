"""The typed records and the S3 layout: one JSON form each, versioned, unknown keys kept; keys built in one place."""

from __future__ import annotations

import json

import pytest

from flux_provider.columns import Column
from flux_provider.errors import Decision, ErrorRecord
from flux_provider.handoffs import ExportResult, TransformResult, UploadResult
from flux_provider.records import RecordError
from flux_provider.run_records import Chunk, ExportSource, Manifest, PartManifest, PartSummary, Pointer
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
        parts=[PartSummary(part="p00", rows=5, chunks=2, source=ExportSource(tool="freebcp"))],
    )


@pytest.mark.parametrize(
    "record",
    [
        manifest(),
        PartManifest.summing("b", "d/runs/r/", [Chunk(key="k", rows=1)], part="p00", run_key="r"),
        Pointer.to(manifest()),
        Part(name="p00", sql="SELECT 1", prefix="d/runs/r/"),
        UploadResult(
            dataset="d",
            bucket="b",
            prefix="d/runs/r/",
            manifest="d/runs/r/_manifest.json",
            rows=5,
            export=ExportResult(dataset="d", rows=5, columns=[Column("a", "bigint", "bigint")]),
        ),
        ErrorRecord(
            error_class="deadlock",
            terminal=False,
            message="victim",
            recovery=Decision(action="retry", rule="deadlocks", reason="retry 1 of 3 in 60s", delay_seconds=60.0),
        ),
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
    run = layout.generation("manual__x", 2)
    assert layout.run("manual__x", 2) == run and layout.run_at(run.prefix) == run  # deprecated names
    assert run.prefix == "media/titles/runs/manual__x.2/" and run.manifest_key.endswith(
        "runs/manual__x.2/_manifest.json"
    )
    assert run.part_manifest_key("p03") == "media/titles/runs/manual__x.2/_parts/p03.json"
    assert run.chunk_key("p03", 7, ".hive.gz") == "media/titles/runs/manual__x.2/p03-00007.hive.gz"
    assert run.chunk_key(None, 0, ".hive") == "media/titles/runs/manual__x.2/part-00000.hive"
    assert layout.generation_at(run.prefix) == run == DatasetLayout.generation_in("flux", run.prefix)
    assert layout.generation_of(run.chunk_key(None, 0, ".hive")) == "manual__x.2"
    assert layout.generation_of("media/titles/_published.json") is None
    root = DatasetLayout("flux", "")
    assert root.pointer_key == "_published.json" and root.generation("r").prefix == "runs/r/"
    for wrong in ("media/titles/r/", "media/titles/runs/"):
        with pytest.raises(ValueError):
            layout.generation_at(wrong)


def test_urls_are_parsed_with_a_clear_error():
    assert DatasetLayout.from_url("s3://flux/media/titles/") == DatasetLayout("flux", "media/titles")
    assert DatasetLayout.from_url("s3a://flux/x").location == "x"
    for wrong in ("flux/x", "s3://"):
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            DatasetLayout.from_url(wrong)


def test_no_product_code_puts_a_named_key_in_a_records_extra():
    """``extra`` carries the keys a newer writer added that this version does not know; a key the product
    itself writes is a field. Fails on ``SomeRecord(..., extra={"key": ...})`` anywhere in flux_provider/."""
    import ast
    from pathlib import Path

    import flux_provider

    trees = {path: ast.parse(path.read_text()) for path in Path(flux_provider.__file__).parent.rglob("*.py")}
    records, grew = {"Record"}, True
    while grew:  # every class that derives from Record, directly or not
        found = {
            node.name
            for tree in trees.values()
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            and any(getattr(base, "id", getattr(base, "attr", None)) in records for base in node.bases)
        }
        grew, records = bool(found - records), records | found
    written = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = getattr(func, "id", None) or getattr(func, "attr", None)
            owner = getattr(getattr(func, "value", None), "id", None)  # cls(...) / Record.of(...) / replace(...)
            if name in records or owner in records or name in ("cls", "replace"):
                for keyword in node.keywords:
                    if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict) and keyword.value.keys:
                        written.append(f"{path.name}:{node.lineno}")
    assert len(records) > 10 and written == []


def test_a_decision_is_a_typed_record_inside_the_error_record_and_must_be_whole():
    """``ErrorRecord.recovery`` reads back as a :class:`Decision` (the JSON keys are those written before it
    was a record); one that lacks a required fact is refused by name, not half-read."""
    stored = {
        "record": "flux.error/1",
        "error_class": "deadlock",
        "recovery": {"action": "retry", "rule": "rule 1", "reason": "retry 1 of 3", "throttle_down": 0.5},
    }
    record = ErrorRecord.from_json(stored)
    assert record.recovery == Decision(action="retry", rule="rule 1", reason="retry 1 of 3", throttle_down=0.5)
    assert record.to_json()["recovery"] == {**stored["recovery"], "delay_seconds": None, "alert": False}
    with pytest.raises(RecordError, match="lacks rule, reason, which a flux.decision must have"):
        ErrorRecord.from_json({**stored, "recovery": {"action": "retry"}})


#: The facts an upload's XCom always has.
UPLOAD = {"record": "flux.upload/1", "dataset": "d", "bucket": "b", "prefix": "d/runs/r/", "manifest": "m", "rows": 1}


def test_an_upload_or_a_transform_without_the_facts_it_must_have_is_refused_by_name():
    with pytest.raises(RecordError, match="UploadResult: this JSON lacks bucket, rows, which a flux.upload must have"):
        UploadResult.from_json({k: v for k, v in UPLOAD.items() if k not in ("bucket", "rows")})
    transform = {"dataset": "d", "run": "r", "target": "`t`", "manifest_rows": 2, "staging_rows": 2}
    with pytest.raises(RecordError, match="lacks target_rows"):
        TransformResult.from_json(transform)
    assert TransformResult.from_json({**transform, "target_rows": 2}).target_rows == 2


def test_a_transform_of_version_1_reads_its_columns_as_records():
    from flux_provider.handoffs import HiveColumn

    old = {"record": "flux.transform/1", "dataset": "d", "run": "r", "target": "`t`", "manifest_rows": 1}
    read = TransformResult.from_json({**old, "staging_rows": 1, "target_rows": 1, "columns": {"id": "BIGINT"}})
    assert read.columns == [HiveColumn("id", "BIGINT")]
    assert read.to_json()["columns"] == [{"name": "id", "type": "BIGINT"}]
    assert read.to_json()["record"] == "flux.transform/2"


def test_an_exports_columns_are_column_records_in_every_record_that_carries_them():
    """The columns an export describes travel as :class:`Column` records (the same JSON keys as before), in
    the export's and the upload's XComs and in a run's manifest, so the Hive side needs no re-validation."""
    column = {"name": "title_id", "type_name": "bigint", "system_type_name": "bigint", "nullable": False}
    export = ExportResult.from_json({"record": "flux.export/1", "columns": [column]})
    upload = UploadResult.from_json({**UPLOAD, "columns": [column], "export": export.to_json()})
    manifest = Manifest.from_json({"format": "flux-hive-text/1", "columns": [column]})
    for columns in (export.columns, upload.columns, upload.export.columns, manifest.columns):
        assert columns == [Column("title_id", "bigint", "bigint", nullable=False)]
    assert export.to_json()["columns"] == [{**column, "precision": 0, "scale": 0, "max_length": 0}]
    with pytest.raises(RecordError, match="lacks type_name, system_type_name"):
        ExportResult.from_json({"columns": [{"name": "title_id"}]})


def test_a_runs_encoding_is_a_record_that_validates_what_it_reads():
    """A run's encoding reads back as :class:`HiveTextEncoding` from the manifest's and the upload's JSON
    (the keys written before it was a record), and one Hive could not read is refused when read."""
    from flux_provider.encoding import HiveTextEncoding

    written = HiveTextEncoding(null="NULL")
    stored = {"field": "\x01", "collection": "\x02", "map_key": "\x03", "null": "NULL"}
    assert written.to_json() == stored
    assert Manifest.from_json({"format": "flux-hive-text/1", "encoding": stored}).encoding == written
    assert UploadResult.from_json({**UPLOAD, "encoding": stored}).encoding == written
    # written before row and escape were constants; a templated dict's "\n" rendered by Jinja comes back ""
    older = Manifest.from_json({"format": "flux-hive-text/1", "encoding": {**stored, "row": "", "escape": "\\"}})
    assert older.encoding.null == "NULL" and (older.encoding.ROW, older.encoding.ESCAPE) == ("\n", "\\")
    with pytest.raises(ValueError, match="three distinct single characters"):
        Manifest.from_json({"format": "flux-hive-text/1", "encoding": {**stored, "collection": "\x01"}})


def test_a_runs_source_partitions_and_landing_are_records():
    """What a manifest says the run came from, the partitions a transform wrote and what its landing
    retention did read back as records from the JSON written before they were (same keys)."""
    from flux_provider.handoffs import TransformResult, WrittenPartition
    from flux_provider.retention import LandingOutcome

    manifest = Manifest.from_json(
        {"format": "flux-hive-text/1", "source": {"path": None, "host": "w1", "rows": 3, "tool": "freebcp"}}
    )
    assert manifest.source == ExportSource(host="w1", rows=3, tool="freebcp")
    stored = {
        "record": "flux.transform/1",
        **{"dataset": "d", "run": "r", "target": "`t`", "manifest_rows": 7, "staging_rows": 7, "target_rows": 7},
        "partitions": [{"name": "day=2024-01-01", "values": {"day": "2024-01-01"}, "rows": 7}],
        "landing": {"removed": ["r1"], "objects": 4, "bytes": 100, "kept": 2},
    }
    result = TransformResult.from_json(stored)
    assert result.partitions == [WrittenPartition(name="day=2024-01-01", values={"day": "2024-01-01"}, rows=7)]
    assert result.landing == LandingOutcome(removed=["r1"], objects=4, bytes=100, kept=2)
    assert result.to_json()["partitions"] == stored["partitions"]
    with pytest.raises(RecordError, match="lacks values, rows"):
        TransformResult.from_json({**stored, "partitions": [{"name": "day=2024-01-01"}]})
