"""What an S3 failure means: the error class of a boto/s3transfer exception, and the answers that are not errors."""

from __future__ import annotations

from flux_provider.errors import ErrorClass

_CODES = {
    "AccessDenied": ErrorClass.PERMISSION,
    "AllAccessDisabled": ErrorClass.PERMISSION,
    "InvalidAccessKeyId": ErrorClass.LOGIN,
    "SignatureDoesNotMatch": ErrorClass.LOGIN,
    "ExpiredToken": ErrorClass.LOGIN,
    "NoSuchBucket": ErrorClass.MISSING_OBJECT,
    "SlowDown": ErrorClass.THROTTLED,
    "RequestLimitExceeded": ErrorClass.THROTTLED,
    "ServiceUnavailable": ErrorClass.THROTTLED,
    "503": ErrorClass.THROTTLED,
    "RequestTimeout": ErrorClass.TIMEOUT,
    "InternalError": ErrorClass.CONNECTION,
    "500": ErrorClass.CONNECTION,
    "BadDigest": ErrorClass.DATA,
    "InvalidDigest": ErrorClass.DATA,
    "EntityTooLarge": ErrorClass.DATA,
}


def classify_s3(exc: BaseException) -> ErrorClass:
    """Class of a boto/s3transfer failure: throttling and 5xx transient, access and buckets terminal."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return _CODES.get(code) or (ErrorClass.CONNECTION if status and status >= 500 else ErrorClass.UNKNOWN)
    if isinstance(exc, ReadTimeoutError):  # the endpoint accepted the connection and never answered
        return ErrorClass.CONNECTION
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ConnectionError)):
        return ErrorClass.CONNECTION
    if isinstance(exc, BotoCoreError):
        return ErrorClass.CONNECTION
    return ErrorClass.UNKNOWN


def is_missing(exc: BaseException) -> bool:
    """S3 answered that the object (or key) is not there."""
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
        "404",
        "NoSuchKey",
        "NotFound",
    )


def lost_race(exc: BaseException) -> bool:
    """A conditional write refused because the object changed (412), or was created meanwhile (409)."""
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status in (409, 412) or response.get("Error", {}).get("Code") in (
        "PreconditionFailed",
        "ConditionalRequestConflict",
    )
