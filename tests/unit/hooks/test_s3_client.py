"""The S3 client's timeouts: a frozen endpoint (connections accepted, never answered) fails fast and
is classified ``connection`` (retried by the rules), instead of hanging the upload for minutes."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from flux_provider.errors import ErrorClass


@pytest.fixture
def frozen_endpoint():
    """A TCP server that accepts every connection and never sends a byte (a stopped S3 process whose
    socket still listens behaves so)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_frozen_s3_endpoint_fails_as_connection_within_the_configured_bound(frozen_endpoint, monkeypatch):
    from botocore.exceptions import BotoCoreError

    from flux_provider.hooks.chunk_uploader import ChunkUploader
    from flux_provider.hooks.s3_client import s3_client, s3_config
    from flux_provider.hooks.s3_errors import classify_s3

    defaults = s3_config()
    assert (defaults.connect_timeout, defaults.read_timeout, defaults.retries["max_attempts"]) == (5.0, 15.0, 2)
    monkeypatch.setenv(
        "AIRFLOW_CONN_FROZEN_S3",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "key",
                "password": "secret",
                "extra": {"endpoint_url": frozen_endpoint, "region_name": "us-east-1"},
            }
        ),
    )
    monkeypatch.setenv("AIRFLOW__FLUX__S3_READ_TIMEOUT", "2")
    started = time.monotonic()
    uploader = ChunkUploader(s3_client("frozen_s3"), "bucket", "data/set", "run=1", dataset="events")
    with pytest.raises(Exception) as failure:
        uploader.start()
    elapsed = time.monotonic() - started
    # 2 attempts of a 2 s read timeout, with room for a loaded machine: botocore's default takes minutes
    assert elapsed < 2 * 2 + 10, elapsed
    cause = failure.value if isinstance(failure.value, BotoCoreError) else failure.value.__cause__
    assert classify_s3(cause) is ErrorClass.CONNECTION
    assert getattr(failure.value, "error_class", ErrorClass.CONNECTION) is ErrorClass.CONNECTION


def test_a_connections_own_config_kwargs_win(monkeypatch):
    from flux_provider.hooks.s3_client import s3_hook

    monkeypatch.setenv(
        "AIRFLOW_CONN_TUNED_S3", json.dumps({"conn_type": "aws", "extra": {"config_kwargs": {"read_timeout": 99}}})
    )
    config = s3_hook("tuned_s3").conn_config.botocore_config
    assert (config.read_timeout, config.connect_timeout) == (99, 5.0)
