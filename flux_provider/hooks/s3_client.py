"""The S3 client every flux step uses: Airflow's ``S3Hook`` with timeouts and bounded retries.

botocore's defaults (60 s connect and read timeouts, retried up to 5 times with
the legacy mode) let a frozen endpoint (connections accepted, never answered)
hang an upload for minutes. Defaults here, all ``[flux]`` options:

* ``s3_connect_timeout`` (seconds, default 5), ``s3_read_timeout`` (default 15);
* ``s3_max_attempts`` (default 2, botocore's ``standard`` retry mode).

A frozen endpoint then fails the try in about
``max_attempts * (connect or read timeout)`` (30 s by default) as a
``connection`` error, and the recovery rules retry it. A
connection's own ``extra.config_kwargs`` still win over these defaults.
"""

from __future__ import annotations

import logging

from flux_provider.s3_layout import parse_s3_url

log = logging.getLogger(__name__)


def s3_config():
    from botocore.config import Config

    from flux_provider.config import flux_float, flux_int

    return Config(
        connect_timeout=flux_float("s3_connect_timeout"),
        read_timeout=flux_float("s3_read_timeout"),
        retries={"max_attempts": flux_int("s3_max_attempts"), "mode": "standard"},
    )


def s3_hook(aws_conn_id: str | None):
    """An ``S3Hook`` whose client has flux's timeouts, merged under the connection's own config."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    own = S3Hook(aws_conn_id=aws_conn_id).conn_config.botocore_config
    config = s3_config() if own is None else s3_config().merge(own)
    return S3Hook(aws_conn_id=aws_conn_id, config=config)


def s3_client(aws_conn_id: str | None):
    return s3_hook(aws_conn_id).get_conn()


def delete_under(aws_conn_id: str | None, location: str) -> int | None:
    """Delete every object under ``location`` (a partition's folder); how many (None: not on S3, left alone)."""
    if not location.startswith(("s3://", "s3a://")):
        log.warning("not deleting %s: not on S3", location)
        return None
    bucket, prefix = parse_s3_url(location)
    hook = s3_hook(aws_conn_id)
    keys = hook.list_keys(bucket_name=bucket, prefix=prefix.rstrip("/") + "/")
    if keys:
        hook.delete_objects(bucket=bucket, keys=keys)
    return len(keys)


#: What a killed Spark or Hive INSERT leaves under a table's location (each write stages there first).
LEFTOVER_PREFIXES = (".spark-staging-", ".hive-staging", "_temporary/")


def remove_insert_leftovers(
    aws_conn_id: str | None, location: str | None, *, older_than, dataset: str | None = None
) -> int:
    """Delete the staging objects that killed INSERTs left under ``location`` (``s3://`` or ``s3a://``),
    written before ``older_than`` (an aware datetime: a write still running is never touched). Returns how
    many were deleted. Housekeeping: a failure is logged, never raised (the step that calls it did its work)."""
    if not location or not location.startswith(("s3://", "s3a://")):
        return 0
    try:
        bucket, prefix = parse_s3_url(location)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        hook = s3_hook(aws_conn_id)
        doomed = []
        for page in hook.get_conn().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) :]
                top = relative.split("/", 1)[0] + ("/" if "/" in relative else "")
                if top.startswith(LEFTOVER_PREFIXES) and item["LastModified"] < older_than:
                    doomed.append(item["Key"])
        if doomed:
            hook.delete_objects(bucket=bucket, keys=doomed)  # in batches of 1000
    except Exception as exc:  # boto raises many unrelated types; none may fail the step
        log.warning("data set %s: could not remove insert leftovers under %s: %s", dataset, location, exc)
        return 0
    if doomed:
        log.info(
            "data set %s: removed %d staging files that killed inserts left under %s", dataset, len(doomed), location
        )
    return len(doomed)
