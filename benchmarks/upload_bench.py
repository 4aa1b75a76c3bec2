"""Upload benchmark: Hive encoding, chunked upload, streaming, memory.

    .venv/bin/python benchmarks/upload_bench.py [--rows 1000000,5000000,10000000] [--stream-rows 1000000]

One run, same files, a private SeaweedFS (S3) and TDS stand-in started here:

* encode: flux's block encoder (2 threads) vs Python's csv reader/writer with
  the same Hive escaping, on the same rows, both into /dev/null, best of
  3 and 2 runs (goal >= 5x); and flux's CSV input path on Python's CSV file;
* upload: s3transfer ``upload_file`` of the already encoded file vs flux's
  uploader on the same pre-encoded bytes (the operator's defaults: 32 MB chunks,
  4 at once, publish included; the upload machinery alone, best of 5
  alternating runs each and the median of their 5 ratios, goal >= 0.95x) and vs the whole S3ChunkUploadOperator
  (encode + chunk + upload + publish, one run in a child process);
* streaming: BcpToS3Operator (freebcp -> pipe -> encode -> S3) vs its stages run
  alone: export to a file, encode, upload (goal <= 1.2x the slowest stage);
* memory: peak RSS of the upload process tree at every size (goal: flat).

Prints a table; writes benchmarks/results/upload.json and upload.png. The
machine is shared and noisy: read the ratios. Needs about 15 GB of free disk at
10M rows (the files and the S3 server's data, removed at the end).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from export_bench import bench_login, generate, run_measured, stand_in  # noqa: E402  (the same viewing-sessions table)

from flux_provider.formats import export_file as fmt  # noqa: E402

COLUMNS = 7
DEVICES = ["tv", "phone", "tablet", "web", "console"]


def write_export(path: Path, rows: int) -> dict:
    """A bcp export file of viewing sessions (what BcpExportOperator writes) and its XCom."""
    rnd = random.Random(42)
    ft, rt = fmt.DEFAULT_FIELD_TERMINATOR.encode(), fmt.DEFAULT_ROW_TERMINATOR.encode()
    with open(path, "wb", buffering=1 << 22) as out:
        batch = []
        for i in range(rows):
            batch.append(
                ft.join(
                    (
                        str(i).encode(),
                        str(rnd.randrange(10**6)).encode(),
                        f"Title {rnd.randrange(5000)} ü".encode(),
                        f"2026-01-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00.{i % 1000:03d}".encode(),
                        str(rnd.randrange(7200)).encode(),
                        f"{rnd.randrange(100000) / 100:.2f}".encode(),
                        DEVICES[i % 5].encode() if i % 11 else b"",
                    )
                )
                + rt
            )
            if len(batch) == 100_000:
                out.write(b"".join(batch))
                batch.clear()
        out.write(b"".join(batch))
    columns = [fmt.Column.from_system_type(f"c{i}", "nvarchar(100)").to_json() for i in range(COLUMNS)]
    return {
        "path": str(path),
        "host": os.uname().nodename,
        "rows": rows,
        "bytes": path.stat().st_size,
        "columns": columns,
        "field_terminator": fmt.DEFAULT_FIELD_TERMINATOR,
        "row_terminator": fmt.DEFAULT_ROW_TERMINATOR,
    }


def best_of(repeat: int, run) -> float:
    """The shortest of ``repeat`` timed calls of ``run()`` (the machine is noisy)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def flux_encode(path: str | Path, encoder, out_path: Path | None = None) -> None:
    """The operator's encoding (default blocks, threads and 32 MB chunks) of ``path`` into ``out_path``."""
    from flux_provider.formats.chunker import chunks

    with open(path, "rb") as src, open(out_path or os.devnull, "wb") as out:
        for chunk in chunks(src, encoder, target_bytes=32 * 2**20):
            out.write(chunk.data)


def encode_file(info: dict, out_path: Path | None, repeat: int = 3) -> float:
    """Best of ``repeat`` runs of the operator's encoding of the bcp export."""
    from flux_provider.formats.hive_text import BcpToHive

    encoder = BcpToHive(info["field_terminator"], info["row_terminator"], COLUMNS)
    return best_of(repeat, lambda: flux_encode(info["path"], encoder, out_path))


def encode_value(value: str | None, enc) -> str:
    """One value in Hive text, the way a per-field Python encoder writes it (the baseline's)."""
    if value is None:
        return enc.null
    value = value.replace("\\", "\\\\")
    for d in (enc.field, enc.collection, enc.map_key):
        value = value.replace(d, "\\" + d)
    return value.replace("\n", "\\n").replace("\r", "\\r")


def csv_baseline(info: dict, csv_path: Path, repeat: int = 2) -> float:
    """Best of ``repeat`` runs: Python csv reader -> Hive escaping -> writer over the same rows as RFC 4180 CSV."""
    from flux_provider.formats.hive_text import HiveTextEncoding

    ft, rt = info["field_terminator"].encode(), info["row_terminator"].encode()
    with open(info["path"], "rb") as src, open(csv_path, "w", newline="") as out:
        writer = csv.writer(out)
        for record in src.read().split(rt)[:-1]:
            writer.writerow([f.decode() for f in record.split(ft)])
    enc = HiveTextEncoding()

    def run() -> None:
        with open(csv_path, newline="") as src, open(os.devnull, "w") as out:
            for row in csv.reader(src):
                out.write(enc.field.join(encode_value(None if v == "" else v, enc) for v in row) + "\n")

    return best_of(repeat, run)


def encode_csv_file(csv_path: Path, repeat: int = 3) -> float:
    """Best of ``repeat`` runs of flux's CSV input path (Arrow's reader + the Hive encoding) on the same rows."""
    from flux_provider.formats.hive_text import CsvToHive

    return best_of(repeat, lambda: flux_encode(csv_path, CsvToHive(COLUMNS)))


CHILD = """
import json, sys, time
from types import SimpleNamespace
import airflow.providers.amazon.aws.hooks.s3, boto3.s3.transfer  # imported before timing, like s3transfer's
from flux_provider.operators.s3_chunk_upload import S3ChunkUploadOperator
info, location, run_id = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
op = S3ChunkUploadOperator(task_id="upload", dataset="bench", export=info, s3_location=location, chunk_mb=32,
                           compression=None, max_inflight=4, delete_export=False)  # plain, as the baseline
start = time.perf_counter()
op.execute({"ti": SimpleNamespace(run_id=run_id, try_number=1)})
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def s3transfer_baseline(client, path: Path, key: str) -> float:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=16 * 2**20, multipart_chunksize=16 * 2**20, max_concurrency=8)
    start = time.perf_counter()
    client.upload_file(str(path), "flux", key, Config=config)
    return time.perf_counter() - start


def chunk_upload_only(client, encoded: Path, run_key: str) -> float:
    """The upload half of S3ChunkUploadOperator alone: pre-encoded 32 MB chunks, same uploader and settings."""
    from boto3.s3.transfer import TransferConfig

    from flux_provider.formats.chunker import Chunk
    from flux_provider.hooks.chunk_uploader import ChunkUploader

    part = 64 * 2**20  # the operator's defaults: 32 MB chunks in one PUT each, 4 at once
    uploader = ChunkUploader(
        client,
        "flux",
        "bench/upload-only",
        run_key,
        max_inflight=4,
        transfer_config=TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=2),
    )
    start = time.perf_counter()
    uploader.start()
    with open(encoded, "rb") as src:
        index = 0
        while data := src.read(32 * 2**20):
            uploader.submit(Chunk(index, data, 0, len(data)))
            index += 1
    uploader.finish()
    uploader.publish()
    uploader.close()
    return time.perf_counter() - start


def streaming(work: Path, rows: int, env: dict, client) -> dict:
    """freebcp -> file, encode, upload alone vs BcpToS3Operator doing all three at once."""
    from flux_provider.hooks.bcp import BcpHook
    from flux_provider.operators.bcp_to_s3 import BcpToS3Operator

    db, port = work / "source.sqlite", _free_port()
    generate(db, rows)
    users, os.environ["AIRFLOW_CONN_BENCH"] = bench_login(work, port)
    server = stand_in(db, port, users)
    try:
        time.sleep(1.5)
        op = BcpToS3Operator(
            task_id="s",
            dataset="bench",
            schema="dbo",
            table="sessions",
            mssql_conn_id="bench",
            engine="bcp",
            staging_dir=str(work / "staging"),
            s3_location="s3://flux/bench/stream",
            upload_options={"chunk_mb": 32, "compression": None},  # plain, as the baseline
        )
        op.prepare()
        export_path = work / "stream-export.bcp"
        start = time.perf_counter()
        BcpHook("bench", batch_size=100_000, log_every=3600).export(
            op.query, str(export_path), field_terminator=op.field_terminator, row_terminator=op.row_terminator
        )
        export_s = time.perf_counter() - start
        info = {"path": str(export_path), "field_terminator": op.field_terminator, "row_terminator": op.row_terminator}
        from flux_provider.formats.hive_text import BcpToHive

        encoded = work / "stream-encoded.hive"
        encoder = BcpToHive(op.field_terminator, op.row_terminator, len(op.columns))
        encode_s = best_of(1, lambda: flux_encode(info["path"], encoder, encoded))
        upload_s = s3transfer_baseline(client, encoded, "bench/stream-baseline.hive")
        start = time.perf_counter()
        op.execute({"ti": SimpleNamespace(run_id=f"stream_{time.time_ns()}", try_number=1)})
        total_s = time.perf_counter() - start
        for path in (export_path, encoded):
            path.unlink()
    finally:
        server.terminate()
        server.wait()
    slowest = max(export_s, encode_s, upload_s)
    return {
        "rows": rows,
        "export_s": export_s,
        "encode_s": encode_s,
        "upload_s": upload_s,
        "streaming_s": total_s,
        "vs_slowest": total_s / slowest,
        "vs_sum": total_s / (export_s + encode_s + upload_s),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure_size(rows: int, work: Path, env: dict, client, *, with_csv: bool) -> dict:
    """One size: encode speed (and Python's csv on the first), the upload in a process of its own, and the
    uploader alone against s3transfer on the same encoded bytes."""
    info = write_export(work / f"export-{rows}.bcp", rows)
    mb = info["bytes"] / 1e6
    encoded = work / "encoded.hive"
    encode_s = encode_file(info, None)  # timed like the csv path: into /dev/null
    encode_file(info, encoded, repeat=1)  # the encoded file both uploaders send
    csv_s = csv_baseline(info, work / "same.csv") if with_csv else None
    csv_flux_s = encode_csv_file(work / "same.csv") if csv_s else None
    done, peak = run_measured(
        [
            sys.executable,
            "-c",
            CHILD,
            json.dumps(info),
            "s3://flux/bench/upload",
            f"run_{rows}_{time.time_ns()}",
        ],
        env,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    upload_s = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    # the two uploaders on the same bytes, alternating, 5 runs each (the machine is noisy): best and median
    runs = [
        (
            s3transfer_baseline(client, encoded, f"bench/baseline-{rows}.hive"),
            chunk_upload_only(client, encoded, f"only_{rows}_{time.time_ns()}"),
        )
        for _ in range(5)
    ]
    baseline_s, upload_only_s = (min(r[i] for r in runs) for i in (0, 1))
    median_ratio = statistics.median(b / u for b, u in runs)
    result = {
        "rows": rows,
        "export_mb": mb,
        "encode_s": encode_s,
        "encode_mb_s": mb / encode_s,
        "csv_s": csv_s,
        "upload_s": upload_s,
        "s3transfer_s": baseline_s,
        "peak_rss_mb": peak,
        "upload_only_s": upload_only_s,
        "upload_only_vs_s3transfer": baseline_s / upload_only_s,
        "upload_only_vs_s3transfer_median": median_ratio,
        "upload_vs_s3transfer": baseline_s / upload_s,
    }
    if csv_s:
        result.update(encode_vs_csv=csv_s / encode_s, csv_flux_s=csv_flux_s, csv_in_vs_csv=csv_s / csv_flux_s)
    print(
        f"{rows:>11,} rows {mb:7.0f} MB: encode {encode_s:6.1f}s ({mb / encode_s:5.0f} MB/s)"
        + (f", Python csv {csv_s:6.1f}s, flux on the CSV {csv_flux_s:5.1f}s" if csv_s else "")
        + f"; upload {upload_s:6.1f}s (uploader alone {upload_only_s:5.1f}s) vs s3transfer "
        f"{baseline_s:6.1f}s; peak RSS {peak:5.0f} MB",
        flush=True,
    )
    for path in (Path(info["path"]), encoded, work / "same.csv"):
        path.unlink(missing_ok=True)
    return result


def report(results: list[dict], stream: dict) -> None:
    first = results[0]
    print()
    print(
        f"{'rows':>11} {'MB':>6} {'encode MB/s':>12} {'vs csv':>7} {'s3transfer s':>13} {'uploader s':>11} "
        f"{'speed vs s3t':>13} {'median':>7} {'encode+upload s':>16} {'speed vs s3t':>13} {'peak RSS MB':>12}"
    )
    for r in results:
        vs_csv = f"{r['encode_vs_csv']:.1f}x" if r.get("encode_vs_csv") else "-"
        print(
            f"{r['rows']:>11,} {r['export_mb']:>6.0f} {r['encode_mb_s']:>12.0f} {vs_csv:>7} "
            f"{r['s3transfer_s']:>13.1f} "
            f"{r['upload_only_s']:>11.1f} {r['upload_only_vs_s3transfer']:>12.2f}x "
            f"{r['upload_only_vs_s3transfer_median']:>6.2f}x {r['upload_s']:>16.1f} "
            f"{r['upload_vs_s3transfer']:>12.2f}x {r['peak_rss_mb']:>12.0f}"
        )
    if first.get("csv_flux_s"):
        print(
            f"\nCSV input, same rows: flux {first['csv_flux_s']:.1f}s vs Python csv {first['csv_s']:.1f}s = "
            f"{first['csv_in_vs_csv']:.1f}x"
        )
    print(
        f"\nstreaming {stream['rows']:,} rows: export {stream['export_s']:.1f}s, encode {stream['encode_s']:.1f}s, "
        f"upload {stream['upload_s']:.1f}s alone; BcpToS3Operator {stream['streaming_s']:.1f}s = "
        f"{stream['vs_slowest']:.2f}x the slowest stage ({stream['vs_sum']:.2f}x their sum)"
    )


def plot(results: list[dict], stream: dict) -> None:
    first = results[0]
    from plot import panels

    groups = [f"{r['rows'] / 1e6:g}M rows" for r in results]
    panels(
        RESULTS / "upload.png",
        [
            (
                f"encode time, same {first['rows'] / 1e6:g}M rows",
                ["Hive text encoding"],
                {
                    "flux, bcp input": [first["encode_s"]],
                    "flux, CSV input": [first["csv_flux_s"]],
                    "Python csv": [first["csv_s"]],
                },
                "seconds",
            ),
            (
                "upload wall time",
                groups,
                {
                    "flux encode+upload": [r["upload_s"] for r in results],
                    "flux uploader (pre-encoded)": [r["upload_only_s"] for r in results],
                    "s3transfer upload_file (pre-encoded)": [r["s3transfer_s"] for r in results],
                },
                "seconds",
            ),
            ("peak RSS of the upload process", groups, {"flux upload": [r["peak_rss_mb"] for r in results]}, "MB"),
            (
                "streaming vs stages",
                [f"{stream['rows'] / 1e6:g}M rows"],
                {
                    "export": [stream["export_s"]],
                    "encode": [stream["encode_s"]],
                    "upload": [stream["upload_s"]],
                    "streaming total": [stream["streaming_s"]],
                },
                "seconds",
            ),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="1000000,5000000,10000000")
    parser.add_argument("--stream-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    from flux_devstack import Stack
    from flux_devstack.s3 import SeaweedS3

    RESULTS.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="flux-upload-bench-"))
    s3stack = Stack(run_dir=work / "s3", dags_folder=work, services=[SeaweedS3()], echo=lambda _: None)
    s3stack.up()
    env = dict(
        os.environ,
        AIRFLOW_CONN_AWS_DEFAULT=s3stack.env()["AIRFLOW_CONN_AWS_DEFAULT"],
        AIRFLOW_HOME=str(work / "airflow"),
    )
    os.environ.update(AIRFLOW_CONN_AWS_DEFAULT=env["AIRFLOW_CONN_AWS_DEFAULT"], AIRFLOW_HOME=env["AIRFLOW_HOME"])
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    client = S3Hook().get_conn()
    sizes = [int(r) for r in args.rows.split(",")]
    try:
        results = [measure_size(rows, work, env, client, with_csv=rows == sizes[0]) for rows in sizes]
        stream = streaming(work, args.stream_rows, env, client)
    finally:
        s3stack.down()
        shutil.rmtree(work, ignore_errors=True)  # files and the S3 server's data: ~15 GB at 10M rows
    report(results, stream)
    (RESULTS / "upload.json").write_text(json.dumps({"sizes": results, "streaming": stream}, indent=2))
    plot(results, stream)
    print(f"wrote {RESULTS / 'upload.json'} and {RESULTS / 'upload.png'}")


if __name__ == "__main__":
    main()
