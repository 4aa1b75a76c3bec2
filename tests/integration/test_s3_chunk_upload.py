"""S3ChunkUploadOperator against SeaweedFS from the local stack (and a private one for the outage test)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from flux_provider.errors import ErrorClass, FluxTerminalError, FluxTransientError
from flux_provider.formats import export_file as fmt
from flux_provider.formats.hive_text import decode
from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator, run_key_for
from tests.support.stack import export, inject_fault, read_published, s3, seed_table, upload
from tests.support.values import NASTY_ROWS, context, csv_bytes, gzip_members

pytestmark = pytest.mark.stack


def keys_under(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def assert_nothing_published(client, location: str) -> None:
    """No pointer under ``location``: readers see no run at all (and no manifest was written either)."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as missing:
        client.head_object(Bucket="flux", Key=f"{location}/_published.json")
    assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    assert not [k for k in keys_under(client, "flux", location) if k.endswith("_manifest.json")]


def download_rows(client, manifest: dict) -> list[list[str | None]]:
    rows = []
    for chunk in manifest["chunks"]:
        body = client.get_object(Bucket=manifest["bucket"], Key=chunk["key"])["Body"].read()
        if manifest["compression"] == "gzip":
            body = gzip.decompress(body)
        decoded = decode(body)
        assert len(decoded) == chunk["rows"]
        rows.extend(decoded)
    return rows


def export_text(info: dict) -> list[list[str | None]]:
    """The export file's fields as Hive should return them: NULL, '' or the text (n + 1 NUL bytes: n NULs)."""
    return [
        [None if raw == b"" else raw[1:].decode() if not raw.strip(fmt.EMPTY) else raw.decode() for raw in record]
        for record in fmt.iter_records(Path(info["path"]), info["field_terminator"], info["row_terminator"])
    ]


@pytest.fixture
def nasty_export(stack, tmp_path, unique):
    seed_table(stack, f"up_{unique}")
    return export(tmp_path, unique, schema="dbo", table=f"up_{unique}", engine="bcp")


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("chunking", [{"chunk_rows": 1}, {"chunk_rows": 3}, {"chunk_mb": 64}])
def test_nasty_values_round_trip_through_s3(nasty_export, unique, compression, chunking):
    info = nasty_export
    result = upload(unique, info, f"run_{unique}", compression=compression, **chunking)
    client = s3()
    pointer, manifest = read_published(client, "flux", f"tests/{unique}/nasty")
    assert pointer["prefix"] == result["prefix"] == f"tests/{unique}/nasty/runs/run_{unique}/"
    expected_chunks = {1: len(NASTY_ROWS), 3: -(-len(NASTY_ROWS) // 3)}.get(chunking.get("chunk_rows"), 1)
    assert len(manifest["chunks"]) == result["chunks"] == expected_chunks
    # manifest rows = exported rows = sum of chunk rows
    assert manifest["rows"] == info["rows"] == sum(c["rows"] for c in manifest["chunks"]) == len(NASTY_ROWS)
    assert download_rows(client, manifest) == export_text(info)
    # ... and equals the source: the text column, value by value (NULL vs '' included)
    assert sorted((int(r[0]), r[1]) for r in download_rows(client, manifest)) == sorted(
        (row[0], row[1]) for row in NASTY_ROWS
    )
    assert manifest["columns"] == info["columns"] and manifest["compression"] == compression
    suffix = ".hive.gz" if compression else ".hive"
    assert keys_under(client, "flux", result["prefix"]) == sorted(
        [c["key"] for c in manifest["chunks"]] + [result["prefix"] + "_manifest.json"]
    )
    assert all(c["key"].endswith(suffix) for c in manifest["chunks"])
    for chunk in manifest["chunks"]:  # one PUT each: S3 checked and kept the CRC32 the manifest lists
        body = client.get_object(Bucket="flux", Key=chunk["key"])["Body"].read()
        head = client.head_object(Bucket="flux", Key=chunk["key"], ChecksumMode="ENABLED")
        assert head["ChecksumCRC32"] == base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        assert f"{zlib.crc32(body):08x}" == chunk["crc32"] == head["Metadata"]["flux-crc32"]


def nasty_csv(tmp_path: Path) -> dict:
    """The nasty table's text column as RFC 4180 CSV with a header (NULL unquoted and empty)."""
    rows = [[str(row[0]), row[1]] for row in NASTY_ROWS]
    path = tmp_path / "nasty.csv"
    path.write_bytes(b"id,txt\r\n" + csv_bytes(rows))
    columns = [
        fmt.Column.from_system_type("id", "bigint").to_json(),
        fmt.Column.from_system_type("txt", "nvarchar(400)").to_json(),
    ]
    return {
        "path": str(path),
        "format": "csv",
        "header": True,
        "columns": columns,
        "rows": len(rows),
        "bytes": path.stat().st_size,
    }, rows


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_a_csv_export_round_trips_through_s3(stack, tmp_path, unique, compression):
    info, rows = nasty_csv(tmp_path)
    result = upload(unique, info, f"run_{unique}", compression=compression, chunk_rows=4)
    _, manifest = read_published(s3(), "flux", f"tests/{unique}/nasty")
    assert result["rows"] == manifest["rows"] == len(rows) and result["chunks"] == -(-len(rows) // 4)
    assert download_rows(s3(), manifest) == rows
    assert manifest["source"]["format"] == "csv"


def test_a_malformed_csv_names_file_and_row_and_publishes_nothing(stack, tmp_path, unique):
    info, _ = nasty_csv(tmp_path)
    path = Path(info["path"])
    path.write_bytes(path.read_bytes() + b'99,"fine"\r\n100,"two",fields\r\n')
    info["bytes"] = path.stat().st_size
    with pytest.raises(FluxTerminalError) as failure:
        upload(unique, info, f"run_{unique}")
    message = str(failure.value)
    assert failure.value.error_class is ErrorClass.DATA
    assert str(path) in message and f"Row #{len(NASTY_ROWS) + 3}" in message and "nothing was published" in message
    assert_nothing_published(s3(), f"tests/{unique}/nasty")


def test_a_damaged_bcp_export_names_file_and_row_and_publishes_nothing(nasty_export, unique):
    info = dict(nasty_export)
    path = Path(info["path"])
    ft, rt = info["field_terminator"].encode(), info["row_terminator"].encode()
    path.write_bytes(path.read_bytes() + ft.join([b"77", b"a value with a lost terminator"]) + rt)
    info["bytes"] = path.stat().st_size
    with pytest.raises(FluxTerminalError) as failure:
        upload(unique, info, f"run_{unique}")
    message = str(failure.value)
    assert failure.value.error_class is ErrorClass.DATA and str(path) in message
    assert f"row {len(NASTY_ROWS) + 1} has 2 fields, expected {len(info['columns'])}" in message
    assert_nothing_published(s3(), f"tests/{unique}/nasty")


def test_rerun_of_a_published_run_writes_a_new_generation_and_switches_the_pointer(nasty_export, unique):
    first = upload(unique, nasty_export, f"run_{unique}", chunk_rows=2)
    client = s3()
    before = keys_under(client, "flux", first["prefix"])
    second = upload(unique, nasty_export, f"run_{unique}", chunk_rows=5)
    assert second["prefix"] == f"tests/{unique}/nasty/runs/run_{unique}.1/"
    assert keys_under(client, "flux", first["prefix"]) == before  # a complete run is never rewritten
    pointer, manifest = read_published(client, "flux", f"tests/{unique}/nasty")
    assert pointer["prefix"] == second["prefix"] and len(manifest["chunks"]) == 2
    assert download_rows(client, manifest) == export_text(nasty_export)


def test_the_handoff_file_must_be_on_this_host(tmp_path, unique):
    info = {
        "path": str(tmp_path / "gone.bcp"),
        "host": "worker-7",
        "rows": 1,
        "bytes": 10,
        "columns": [fmt.Column.from_system_type("id", "bigint").to_json()],
        "field_terminator": fmt.DEFAULT_FIELD_TERMINATOR,
        "row_terminator": fmt.DEFAULT_ROW_TERMINATOR,
    }
    with pytest.raises(FluxTerminalError) as failure:
        upload(unique, info, "r")
    message = str(failure.value)
    assert "worker-7" in message and "same worker" in message and "streaming" in message
    with pytest.raises(FluxTerminalError, match="cannot be read: Column: this JSON lacks name, type_name"):
        upload(unique, {**info, "columns": [{}]}, "r")


def test_a_resumed_try_reuses_only_chunks_with_the_same_bytes(stack, unique):
    """An earlier try's chunk is skipped only if its CRC32, size and rows match; else it is replaced."""
    from flux_provider.formats.chunker import Chunk
    from flux_provider.hooks.chunk_uploader import ChunkUploader

    client = s3()

    def try_upload(parts: list[bytes]):
        uploader = ChunkUploader(client, "flux", f"tests/{unique}/resume", "run", dataset="resume")
        uploader.start()
        for index, data in enumerate(parts):
            uploader.submit(Chunk(index, data, data.count(b"\n"), len(data)))
        run = uploader.finish()
        uploader.close()
        return {c.key.rsplit("/", 1)[1]: c.skipped for c in run.chunks}, uploader

    first, second = b"a\x01b\n" * 1000, b"c\x01d\n" * 1000
    assert try_upload([first, second])[0] == {"part-00000.hive": False, "part-00001.hive": False}
    changed = b"a\x01b\n" * 999 + b"a\x01X\n"  # same size and rows, other bytes
    skipped, uploader = try_upload([changed, second])
    assert skipped == {"part-00000.hive": False, "part-00001.hive": True}
    manifest = uploader.publish()
    bodies = [client.get_object(Bucket="flux", Key=c.key)["Body"].read() for c in manifest.chunks]
    assert bodies == [changed, second]


# ---------------------------------------------------------------- a zombie try
PLAIN = {"compression": None}  # what a manifest says of uncompressed chunks


def uploaded(client, location: str, run_key: str, attempt: int, data: bytes, **kwargs):
    """One try of a run, uploaded but not published (what a try has done when its worker is cut off)."""
    from flux_provider.formats.chunker import Chunk
    from flux_provider.hooks.chunk_uploader import ChunkUploader

    uploader = ChunkUploader(client, "flux", location, run_key, dataset="zombie", attempt=attempt, **kwargs)
    uploader.start()
    uploader.submit(Chunk(0, data, data.count(b"\n"), len(data)))
    uploader.finish()
    return uploader


def test_a_superseded_try_cannot_publish_over_its_successor_whatever_the_order(stack, unique):
    """Airflow gave try 1 up (its worker was cut off) and ran try 2 elsewhere. Whichever publishes first,
    the pointer ends at try 2; try 1 publishing after try 2 is refused before it deletes or writes anything."""
    from flux_provider.errors import FluxError

    client = s3()
    # try 2 first, then the zombie
    location = f"tests/{unique}/late-zombie"
    zombie = uploaded(client, location, "run", 1, b"z\x01old\n" * 10)
    successor = uploaded(client, location, "run", 2, b"s\x01new\n" * 10)
    successor.publish(**PLAIN)
    before = {k: client.head_object(Bucket="flux", Key=k)["ETag"] for k in keys_under(client, "flux", location)}
    with pytest.raises(FluxError) as refused:
        zombie.publish(**PLAIN)
    assert refused.value.error_class is ErrorClass.SUPERSEDED and refused.value.error_class.terminal
    assert "superseded: try 2 of this run already published" in str(refused.value)
    after = {k: client.head_object(Bucket="flux", Key=k)["ETag"] for k in keys_under(client, "flux", location)}
    assert after == before  # nothing deleted, nothing rewritten
    pointer, manifest = read_published(client, "flux", location)
    assert pointer["try"] == manifest["try"] == 2
    assert download_rows(client, manifest) == [["s", "new"]] * 10

    # the zombie first, then try 2: try 2 publishes a new generation and the pointer moves to it
    location = f"tests/{unique}/early-zombie"
    uploaded(client, location, "run", 1, b"z\x01old\n" * 10).publish(**PLAIN)
    successor = uploaded(client, location, "run", 2, b"s\x01new\n" * 10)
    successor.publish(**PLAIN)
    pointer, manifest = read_published(client, "flux", location)
    assert pointer["try"] == 2 and pointer["prefix"].endswith("/runs/run.1/")
    assert download_rows(client, manifest) == [["s", "new"]] * 10


def test_a_zombie_still_uploading_stops_at_its_next_chunk_once_its_successor_published(stack, unique):
    """Try 1 is cut off mid-upload, try 2 uploads the run (resuming the same prefix) and publishes it; when
    try 1 comes back it writes no further chunk into the published run: it fails as superseded."""
    from flux_provider.errors import FluxError
    from flux_provider.formats.chunker import Chunk

    client = s3()
    location = f"tests/{unique}/zombie-mid-upload"
    zombie = uploaded(client, location, "run", 1, b"z\x01old\n" * 10)  # chunk 0 up, chunk 1 still to come
    successor = uploaded(client, location, "run", 2, b"s\x01new\n" * 10)
    successor.publish(**PLAIN)
    before = {k: client.head_object(Bucket="flux", Key=k)["ETag"] for k in keys_under(client, "flux", location)}
    data = b"z\x01late\n" * 10
    zombie.submit(Chunk(1, data, 10, len(data)))
    with pytest.raises(FluxError) as refused:
        zombie.finish()
    assert refused.value.error_class is ErrorClass.SUPERSEDED
    assert "was published by another try while this try (1) was uploading to it" in str(refused.value)
    after = {k: client.head_object(Bucket="flux", Key=k)["ETag"] for k in keys_under(client, "flux", location)}
    assert after == before  # no chunk of the zombie landed in the published run
    pointer, manifest = read_published(client, "flux", location)
    assert pointer["try"] == 2 and download_rows(client, manifest) == [["s", "new"]] * 10


class RacingClient:
    """The real S3 client, except that just before the first conditional write of the pointer another writer
    (try 3 of the same run) puts its own pointer: the conditional write then meets a real 412."""

    def __init__(self, client, pointer_key: str, run_key: str):
        self.client, self.pointer_key, self.run_key, self.refusals = client, pointer_key, run_key, []

    def __getattr__(self, name):
        return getattr(self.client, name)

    def put_object(self, **kwargs):
        conditional = "IfMatch" in kwargs or "IfNoneMatch" in kwargs
        if kwargs["Key"] == self.pointer_key and conditional and not self.refusals:
            body = json.dumps({"run_key": self.run_key, "prefix": "elsewhere/", "manifest": "x", "try": 3})
            self.client.put_object(Bucket=kwargs["Bucket"], Key=self.pointer_key, Body=body.encode())
            try:
                return self.client.put_object(**kwargs)
            except Exception as exc:
                self.refusals.append(exc.response["Error"]["Code"])
                raise
        return self.client.put_object(**kwargs)


@pytest.mark.parametrize("pointer_exists", [False, True], ids=["if-none-match", "if-match"])
def test_the_pointer_write_is_conditional_and_a_lost_race_is_decided_again(stack, unique, pointer_exists):
    """SeaweedFS refuses a conditional write on a pointer that changed after it was read (If-Match its ETag,
    or If-None-Match * when there was none); the publisher reads it again and sees it was superseded."""
    from flux_provider.errors import FluxError

    client = s3()
    location = f"tests/{unique}/race"
    if pointer_exists:  # an earlier run (another day) is published: the write is If-Match on its ETag
        uploaded(client, location, "yesterday", 1, b"y\x01y\n").publish(**PLAIN)
    racing = RacingClient(client, f"{location}/_published.json", "run")
    with pytest.raises(FluxError) as refused:
        uploaded(racing, location, "run", 1, b"z\x01z\n").publish(**PLAIN)
    assert racing.refusals in (["PreconditionFailed"], ["ConditionalRequestConflict"])
    assert refused.value.error_class is ErrorClass.SUPERSEDED
    pointer = json.loads(client.get_object(Bucket="flux", Key=f"{location}/_published.json")["Body"].read())
    assert pointer["try"] == 3  # the other writer's pointer stands


def test_a_superseded_publish_task_of_a_split_run_is_refused(stack, unique):
    from flux_provider.errors import FluxError
    from flux_provider.hooks.run_store import RunStore
    from flux_provider.hooks.split_publish import publish_parts
    from flux_provider.s3_layout import DatasetLayout

    client = s3()
    location = f"tests/{unique}/split"
    prefix = f"{location}/runs/run/"
    uploaded(client, location, "run", 1, b"p\x01p\n" * 3, part="p00", prefix=prefix).publish_part()
    store = RunStore(client, DatasetLayout("flux", location))
    published = publish_parts(store, store.layout.generation_at(prefix), ["p00"], attempt=2)
    assert published.attempt == 2 and published.rows == 3
    with pytest.raises(FluxError) as refused:
        publish_parts(store, store.layout.generation_at(prefix), ["p00"], attempt=1)
    assert refused.value.error_class is ErrorClass.SUPERSEDED
    assert read_published(client, "flux", location)[0]["try"] == 2


# ---------------------------------------------------------------- crash and outage
def big_export(path: Path, rows: int, columns: int = 5) -> dict:
    """A synthetic bcp export file (what BcpExportOperator writes), ~200 bytes a row."""
    rnd = random.Random(7)
    ft, rt = fmt.DEFAULT_FIELD_TERMINATOR.encode(), fmt.DEFAULT_ROW_TERMINATOR.encode()
    with open(path, "wb") as out:
        for i in range(rows):
            fields = [
                str(i).encode(),
                f"title {rnd.random()}\n\\ü".encode(),
                b"",
                fmt.EMPTY,
                os.urandom(60).hex().encode(),
            ][:columns]
            out.write(ft.join(fields) + rt)
    cols = [fmt.Column.from_system_type(f"c{i}", "nvarchar(400)").to_json() for i in range(columns)]
    return {
        "path": str(path),
        "host": os.uname().nodename,
        "rows": rows,
        "bytes": path.stat().st_size,
        "columns": cols,
        "field_terminator": fmt.DEFAULT_FIELD_TERMINATOR,
        "row_terminator": fmt.DEFAULT_ROW_TERMINATOR,
    }


UPLOADER = """
import json, sys
from types import SimpleNamespace
from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator
info = json.loads(sys.argv[1])
op = S3ChunkUploadOperator(task_id="upload", dataset="big", export=info, s3_location=sys.argv[2],
                           chunk_mb=12, multipart_mb=5, max_inflight=2, delete_export=False, compression=None)
op.execute({"ti": SimpleNamespace(run_id=sys.argv[3], try_number=1)})
"""


def test_kill_9_mid_upload_then_rerun_publishes_exactly(stack, tmp_path, unique):
    info = big_export(tmp_path / "big.bcp", 400_000)
    location = f"s3://flux/tests/{unique}/big"
    client = s3()
    # Kill while a multipart upload is in flight and at least one chunk is complete. The upload may still
    # complete between seeing it and the kill (a loaded machine): then try again with a run of its own.
    for attempt in range(5):
        run_id = f"run_{unique}_{attempt}"
        prefix = f"tests/{unique}/big/runs/{run_key_for(run_id)}/"
        proc = subprocess.Popen(
            [sys.executable, "-c", UPLOADER, json.dumps(info), location, run_id],
            env=os.environ.copy(),
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            in_flight = client.list_multipart_uploads(Bucket="flux", Prefix=prefix).get("Uploads", [])
            if in_flight and keys_under(client, "flux", prefix):
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"the upload ended before it could be killed: {proc.stderr.read()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if client.list_multipart_uploads(Bucket="flux", Prefix=prefix).get("Uploads"):
            break
    else:
        raise AssertionError("five kills found no multipart upload in flight")
    assert_nothing_published(client, f"tests/{unique}/big")

    result = S3ChunkUploadOperator(
        task_id="upload",
        dataset="big",
        export=info,
        s3_location=location,
        chunk_mb=12,
        multipart_mb=5,
        delete_export=False,
        compression=None,
    ).execute(context(run_id))
    assert result["prefix"] == prefix and result["chunks_reused"] >= 1
    assert client.list_multipart_uploads(Bucket="flux", Prefix=prefix).get("Uploads", []) == []
    pointer, manifest = read_published(client, "flux", f"tests/{unique}/big")
    assert manifest["rows"] == info["rows"] == sum(c["rows"] for c in manifest["chunks"])
    assert keys_under(client, "flux", prefix) == sorted(
        [c["key"] for c in manifest["chunks"]] + [prefix + "_manifest.json"]
    )
    assert download_rows(client, manifest) == export_text(info)


def test_s3_down_mid_upload_is_transient_publishes_nothing_and_a_rerun_succeeds(tmp_path, unique, monkeypatch):
    """A private SeaweedFS (not the shared stack's), stopped in the middle of the upload."""
    from flux_devstack import Stack
    from flux_devstack.s3 import SeaweedS3

    private = Stack(run_dir=tmp_path / "s3stack", dags_folder=tmp_path, services=[SeaweedS3()], echo=lambda _: None)

    def point_at_private():
        private.up()
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", private.env()["AIRFLOW_CONN_AWS_DEFAULT"])
        return s3()

    try:
        client = point_at_private()
        info = big_export(tmp_path / "big.bcp", 300_000)
        location, run_id = "s3://flux/outage/big", f"run_{unique}"
        op = S3ChunkUploadOperator(
            task_id="upload",
            dataset="big",
            export=info,
            s3_location=location,
            chunk_mb=6,
            multipart_mb=5,
            compression=None,  # 6 MB chunks that go up as multipart uploads
            max_inflight=1,
            delete_export=False,
        )
        failure: list[BaseException] = []
        worker = threading.Thread(target=lambda: _capture(failure, op.execute, context(run_id)))
        worker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not keys_under(client, "flux", "outage/big/runs/"):
            time.sleep(0.02)
        private.down()
        worker.join(timeout=300)
        assert failure and isinstance(failure[0], FluxTransientError), failure
        assert failure[0].error_class in (ErrorClass.CONNECTION, ErrorClass.TIMEOUT, ErrorClass.THROTTLED)

        client = point_at_private()  # the same data directory, on new ports
        assert_nothing_published(client, "outage/big")
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", private.env()["AIRFLOW_CONN_AWS_DEFAULT"])
        result = S3ChunkUploadOperator(
            task_id="upload",
            dataset="big",
            export=info,
            s3_location=location,
            chunk_mb=6,
            multipart_mb=5,
            compression=None,  # 6 MB chunks that go up as multipart uploads
            delete_export=False,
        ).execute(context(run_id))
        _, manifest = read_published(client, "flux", "outage/big")
        assert manifest["rows"] == result["rows"] == info["rows"]
        assert keys_under(client, "flux", result["prefix"]) == sorted(
            [c["key"] for c in manifest["chunks"]] + [result["prefix"] + "_manifest.json"]
        )
    finally:
        private.down()


def _capture(sink: list, fn, *args):
    try:
        fn(*args)
    except BaseException as exc:  # collected for the assertions
        sink.append(exc)


# ---------------------------------------------------------------- streaming mode
def stream(stack, tmp_path, unique, table: str, **kwargs) -> dict:
    from flux_provider.operators.bcp_to_s3 import BcpToS3Operator

    kwargs.setdefault("upload_options", {"chunk_rows": 3})
    op = BcpToS3Operator(
        task_id="export_upload",
        dataset="nasty",
        schema="dbo",
        table=table,
        staging_dir=str(tmp_path / "stream"),
        s3_location=f"s3://flux/tests/{unique}/streamed",
        **kwargs,
    )
    return op.execute(context(f"run_{unique}"))


@pytest.mark.parametrize("engine", ["bcp", "dbapi"])
def test_streaming_mode_publishes_the_same_data_with_no_file(stack, tmp_path, unique, engine, nasty_export):
    result = stream(
        stack, tmp_path, unique, f"up_{unique}", engine=engine, upload_options={"chunk_rows": 3, "compression": "gzip"}
    )
    assert result["export"]["rows"] == result["rows"] == len(NASTY_ROWS)
    assert [p for p in (tmp_path / "stream").rglob("*") if not p.is_dir()] == []  # no file, no pipe left
    client = s3()
    _, manifest = read_published(client, "flux", f"tests/{unique}/streamed")
    assert download_rows(client, manifest) == export_text(nasty_export)


def test_streaming_mode_publishes_nothing_when_the_export_fails(stack, tmp_path, unique):

    with pytest.raises(FluxTerminalError) as missing:
        stream(stack, tmp_path, unique, f"no_such_{unique}")
    assert missing.value.error_class is ErrorClass.MISSING_OBJECT

    many = [(i, f"row {i}", str(i), float(i), i % 2, None, None, None, i) for i in range(20000)]
    seed_table(stack, f"smid_{unique}", rows=many)
    inject_fault(stack, f"smid_{unique}", error_number=1205, remaining=1, after_rows=10000)
    with pytest.raises(FluxTransientError) as deadlock:
        stream(stack, tmp_path, unique, f"smid_{unique}", upload_options={"chunk_rows": 1000})
    assert deadlock.value.error_class is ErrorClass.DEADLOCK
    assert_nothing_published(s3(), f"tests/{unique}/streamed")
    # the fault is used up: the rerun streams everything and publishes
    assert stream(stack, tmp_path, unique, f"smid_{unique}", upload_options={"chunk_rows": 5000})["rows"] == 20000


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_spark_lazysimpleserde_reads_the_chunks_exactly(nasty_export, unique, compression):
    """The real reader: an external Hive table (all STRING) over the published run on s3a://."""
    from airflow.providers.apache.hive.hooks.hive import HiveServer2Hook

    # tiny blocks: a gzip chunk is several gzip members, which Hadoop's codec must read as one stream
    result = upload(unique, nasty_export, f"run_{unique}", compression=compression, chunk_rows=3, block_mb=0.0002)
    if compression:
        _, manifest = read_published(s3(), "flux", f"tests/{unique}/nasty")
        bodies = [s3().get_object(Bucket="flux", Key=c["key"])["Body"].read() for c in manifest["chunks"]]
        assert max(gzip_members(body) for body in bodies) > 1
    names = [c["name"] for c in nasty_export["columns"]]
    table = f"t_{unique}.nasty_{compression or 'plain'}"
    hive = HiveServer2Hook()
    hive.run(f"CREATE DATABASE IF NOT EXISTS t_{unique}")
    hive.run(
        f"CREATE EXTERNAL TABLE {table} ({', '.join(f'`{n}` STRING' for n in names)}) "
        "ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe' "
        "WITH SERDEPROPERTIES ('field.delim'='\\001', 'collection.delim'='\\002', 'mapkey.delim'='\\003', "
        "'escape.delim'='\\\\', 'serialization.null.format'='\\\\N', 'serialization.escape.crlf'='true') "
        f"STORED AS TEXTFILE LOCATION 's3a://flux/{result['prefix']}'"
    )
    rows = [list(r) for r in hive.get_records(f"SELECT * FROM {table}")]
    assert sorted(rows, key=lambda r: int(r[0])) == sorted(export_text(nasty_export), key=lambda r: int(r[0]))


RSS_CHILD = """
import json, sys
from types import SimpleNamespace
from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator
op = S3ChunkUploadOperator(task_id="u", dataset="rss", export=json.loads(sys.argv[1]), s3_location=sys.argv[2],
                           chunk_mb=4, multipart_mb=5, max_inflight=2, block_mb=4, delete_export=False,
                           compression=None)
op.execute({"ti": SimpleNamespace(run_id=sys.argv[3], try_number=1)})
"""


def test_upload_memory_stays_flat_as_rows_grow(stack, tmp_path, unique):
    """Loose check of the memory bound (the benchmark measures it properly): 4x the rows, same peak."""
    import psutil

    peaks = []
    for rows in (100_000, 400_000):
        info = big_export(tmp_path / f"rss{rows}.bcp", rows)
        proc = subprocess.Popen(
            [sys.executable, "-c", RSS_CHILD, json.dumps(info), f"s3://flux/tests/{unique}/rss{rows}", "r"],
            env=os.environ.copy(),
        )
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
            except psutil.Error:
                pass
            time.sleep(0.02)
        assert proc.returncode == 0
        peaks.append(peak / 2**20)
    assert peaks[1] < peaks[0] * 1.25 + 20, peaks
