"""The AWS boundary: the one maker of boto3 clients, the one translator of botocore errors.

Every AWS call of the package goes through a client made by :func:`client` (region from the
configuration, retries with backoff, ``AWS_ENDPOINT_URL`` honoured by boto3 itself) and every
botocore exception that escapes a call is passed through :func:`translate`, which picks the error
of :mod:`starburst_executor.errors` and writes a message that says what to do next
(:func:`message` is its one-line form for the command line, where the service is not known).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Literal

import boto3
import botocore.config
import botocore.exceptions
import botocore.session

from .errors import (
    ConfigError,
    LaunchError,
    ObjectNotFound,
    StarburstError,
    StoreAccessDenied,
    StoreError,
)

__all__ = ["client", "default_region", "resolve_region", "translate", "message", "error_code",
           "is_aws_error", "is_throttling", "is_transient", "iam_action", "aws_timestamp"]

MAX_ATTEMPTS = 8
"""Attempts per API call (first try included); botocore backs off exponentially with jitter."""

_THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
        "PriorRequestNotComplete",
    }
)
_EXPIRED = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
)
_BAD_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "AuthFailure",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)
_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AllAccessDisabled",
        "Forbidden",
        "403",
    }
)
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_KMS = frozenset(
    {
        "KMS.NotFoundException",
        "KMS.DisabledException",
        "KMS.KMSInvalidStateException",
        "KMS.AccessDeniedException",
        "KMSInvalidStateException",
        "KMS.InvalidKeyUsageException",
    }
)

# S3 operations whose IAM action is not s3:<operation>.
_S3_ACTIONS = {
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "HeadObject": "s3:GetObject",
    "DeleteObjects": "s3:DeleteObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
}
_IAM_PREFIX = {"service-quotas": "servicequotas", "sts": "sts", "logs": "logs"}

_CREDENTIALS_HELP = (
    "configure AWS credentials: run `aws configure` (or `aws sso login --profile NAME` and set "
    "AWS_PROFILE=NAME), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; on AWS compute, "
    "attach an IAM role. Check with `aws sts get-caller-identity`, then `starburst doctor`"
)

_loader_lock = threading.Lock()
_loader: Any = None


def _new_session(region: str, profile: str | None = None) -> boto3.session.Session:
    # A fresh Session per client: Sessions are not thread-safe, and a long-lived one would keep
    # credentials the user has since refreshed.  The service models they load from disk are
    # the same for all, so they share one loader (a client then costs ~50 ms, not ~200 ms).
    global _loader
    core = botocore.session.get_session()
    with _loader_lock:
        if _loader is None:
            _loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=core, region_name=region, profile_name=profile)


def default_region(profile: str | None = None) -> str | None:
    """The region boto3 would use (``AWS_DEFAULT_REGION``, the profile), or ``None``.

    Raises:
        botocore.exceptions.ProfileNotFound: ``profile`` is not in the AWS config files.
    """
    return boto3.session.Session(profile_name=profile).region_name


def resolve_region(region: str | None) -> str:
    """Return ``region`` or the one boto3 would use (``AWS_REGION``, profile); never ``None``.

    Raises:
        ConfigError: no region anywhere, naming the ways to set one.
    """
    if region:
        return region
    found = default_region() or os.environ.get("AWS_REGION")
    if not found:
        raise ConfigError(
            "no AWS region: pass region=..., set STARBURST_REGION or AWS_REGION, "
            "or run `starburst setup`"
        )
    return found


def client(
    service: str,
    region: str | None = None,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    max_pool_connections: int = 32,
    retry_mode: Literal["standard", "adaptive"] = "standard",
    timeout: float = 60.0,
    session: Any = None,
    profile: str | None = None,
) -> Any:
    """Return a boto3 client for ``service`` with retries and timeouts set.

    ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``) are read by boto3 itself, which is
    how tests point every client at a moto server.

    Args:
        service: ``"s3"``, ``"ecs"``...
        region: the region; default :func:`resolve_region`'s.
        max_attempts: attempts per call, the first included.
        max_pool_connections: connections kept open for threads sharing the client.
        retry_mode: botocore's retry mode.
        timeout: read timeout, seconds (connecting waits at most 10 s, or ``timeout`` if less).
        session: a ``boto3.Session`` to make the client from, so that a caller (a test) can
            register botocore event hooks on every call; default a fresh one.
        profile: the AWS profile of a fresh session.

    Raises:
        ConfigError: no region, or boto3 cannot build the client.
    """
    region = resolve_region(region)
    config = botocore.config.Config(
        region_name=region,
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        connect_timeout=min(10.0, timeout),
        read_timeout=timeout,
        max_pool_connections=max_pool_connections,
        user_agent_extra="starburst-executor",
    )
    try:
        source = session or _new_session(region, profile)
        return source.client(service, config=config)  # type: ignore[call-overload]
    except botocore.exceptions.BotoCoreError as exc:
        raise translate(exc, service=service, operation="create client") from None


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError`` (``""`` for anything else)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_aws_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a botocore error (a refused call, no credentials, no connection...)."""
    return isinstance(exc, (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError))


def aws_timestamp(value: Any) -> float | None:
    """Seconds since the epoch of a time as boto3 returns it (a ``datetime`` or a number)."""
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def is_throttling(exc: BaseException) -> bool:
    """Whether ``exc`` says "slow down" (worth a later retry rather than a failure)."""
    code = error_code(exc)
    if code in _THROTTLING:
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status in (429, 503)
    return False


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later may succeed: throttling, a 5xx answer, no connection."""
    if is_throttling(exc):
        return True
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ReadTimeoutError,
                        botocore.exceptions.ConnectionClosedError)):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return int(status) >= 500
    return False


def iam_action(service: str, operation: str) -> str:
    """The IAM action a call needs, e.g. ``s3:ListBucket`` for ListObjectsV2."""
    if service == "s3":
        return _S3_ACTIONS.get(operation, f"s3:{operation}")
    return f"{_IAM_PREFIX.get(service, service)}:{operation}"


def translate(
    exc: BaseException,
    *,
    service: str,
    operation: str = "",
    resource: str = "",
    bucket: str = "",
    family: type[StarburstError] | None = None,
) -> StarburstError:
    """Return the project error that stands for a botocore exception.

    Args:
        exc: what botocore raised.
        service: ``"s3"``, ``"ecs"``, ``"logs"``...: picks the error family (``StoreError`` for
            S3, ``LaunchError`` for the rest) and the IAM action named on access denied.
        operation: the API operation, e.g. ``"PutObject"``.
        resource: the ARN or ``s3://`` URL of what was accessed, named in the message.
        bucket: the S3 bucket, named when it is missing.
        family: the error of a failed call, instead of the service's (``ImageError`` for ECR
            calls made while building an image); credentials and region stay ``ConfigError``.
    """
    if isinstance(exc, StarburstError):
        return exc
    family = family or (StoreError if service == "s3" else LaunchError)
    what = f"{service} {operation}".strip()
    on = f" on {resource}" if resource else ""
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ConfigError(f"no AWS credentials found for {what}: {_CREDENTIALS_HELP}")
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return ConfigError(
            "no AWS region: pass region=..., set STARBURST_REGION or AWS_REGION, "
            "or run `starburst setup`"
        )
    if isinstance(exc, (botocore.exceptions.PartialCredentialsError,
                        botocore.exceptions.ProfileNotFound)):
        return ConfigError(f"AWS credentials are incomplete ({exc}): {_CREDENTIALS_HELP}")
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ReadTimeoutError,
                        botocore.exceptions.ConnectionClosedError)):
        return family(
            f"cannot reach AWS for {what}{on} ({exc}); check the network, the region and "
            "AWS_ENDPOINT_URL if set, then retry"
        )
    if not isinstance(exc, botocore.exceptions.ClientError):
        return family(f"{what}{on} failed: {exc}")
    return _translate_refusal(exc, service, operation, resource, bucket, family)


def _translate_refusal(
    exc: botocore.exceptions.ClientError,
    service: str,
    operation: str,
    resource: str,
    bucket: str,
    family: type[StarburstError],
) -> StarburstError:
    """:func:`translate` of an error answer of AWS (a ``ClientError``), by its code."""
    what = f"{service} {operation}".strip()
    on = f" on {resource}" if resource else ""
    code = error_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _EXPIRED:
        return ConfigError(
            f"the AWS credentials have expired ({code} during {what}): refresh them "
            "(`aws sso login`, or a new session token in AWS_SESSION_TOKEN), then retry"
        )
    if code in _BAD_CREDENTIALS:
        return ConfigError(
            f"AWS rejected the credentials ({code} during {what}: {message}): {_CREDENTIALS_HELP}"
        )
    if code in _KMS or code.startswith("KMS."):
        return StoreAccessDenied(
            f"the KMS key refused {what}{on} ({code}: {message}): check that kms_key_id names an "
            "enabled key in this region and that your role and the task role may use "
            "kms:GenerateDataKey and kms:Decrypt on it"
        )
    if code == "NoSuchBucket" or (service == "s3" and code == "404" and not operation.endswith(
            "Object")):
        name = bucket or resource
        return StoreError(
            f"S3 bucket {name!r} does not exist (or is in another account): run `starburst setup` "
            "to create it, or set bucket=... / STARBURST_BUCKET to an existing bucket"
        )
    if service == "s3" and (code in _NOT_FOUND or status == 404):
        return ObjectNotFound(f"no object at {resource or what}")
    if code in _DENIED or status == 403:
        action = iam_action(service, operation) if operation else f"{service}:*"
        text = (
            f"access denied: {action}{on} is not allowed for your AWS identity ({message}); "
            f"grant {action} on that resource to your IAM user/role (see `starburst doctor`)"
        )
        return StoreAccessDenied(text) if service == "s3" else family(text)
    if is_throttling(exc):
        return family(
            f"AWS kept throttling {what}{on} ({code}) through every retry with backoff: "
            "lower max_workers or retry later"
        )
    if code in ("ClusterNotFoundException",):
        return LaunchError(
            f"ECS cluster not found ({message}): run `starburst setup` or set cluster=..."
        )
    return family(f"{what}{on} failed: {code}: {message}")


def message(exc: BaseException) -> str:
    """One line for a botocore error raised where the service is not known (the command line),
    saying what to do next."""
    if not isinstance(exc, botocore.exceptions.ClientError):
        return str(translate(exc, service="aws"))  # credentials, region, connection
    translated = translate(exc, service="aws", operation=exc.operation_name)
    if isinstance(translated, ConfigError):  # expired or rejected credentials
        return str(translated)
    code = error_code(exc)
    text = str(exc.response.get("Error", {}).get("Message", "")) or code
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation") or (
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403):
        # AWS's message names the action and resource; the service prefix is not known here.
        return (f"AWS denied {exc.operation_name}: {text}. Grant that permission to your "
                "identity (or have an administrator run `starburst setup`), then retry")
    return f"AWS {exc.operation_name} failed: {code}: {text}"
