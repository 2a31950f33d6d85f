"""A store in an S3 bucket, one prefix per session.

``s3://BUCKET/PREFIX?region=REGION&kms_key_id=KEY`` opens the objects below ``PREFIX`` (the
session's prefix).  Objects are encrypted at rest (SSE-S3, or SSE-KMS with ``kms_key_id``),
uploaded in parts above :data:`MULTIPART_THRESHOLD` (read from the chunks of a ``Chunks``
one part at a time, never joined), and carry the SHA-256 of their content in
their metadata, checked on every read.  (This only catches corruption in transit: whoever
writes the bucket can write a matching SHA-256.  What authenticates an object is the payload's
HMAC, checked before anything is unpickled; the SHA-256 is kept because it also covers what is
not a payload, such as ``session.json``, and turns a corrupt read into a retryable
``StoreError``.)  Throttling (``SlowDown``, 503) is retried by botocore
with backoff; what still fails is translated once by :func:`starburst_executor._aws.translate`.
"""

from __future__ import annotations

import hashlib
import io
import threading
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlparse

from boto3.s3.transfer import TransferConfig

from .. import _aws
from .._chunks import Buffer, Chunks, parts_of, size_of
from ..errors import ConfigError, ObjectNotFound, StoreError
from .._stats import RequestStats

__all__ = ["S3Store", "MULTIPART_THRESHOLD", "MULTIPART_CHUNKSIZE"]

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNKSIZE = 8 * 1024 * 1024
_SHA256_META = "sha256"  # x-amz-meta-sha256
_DELETE_BATCH = 1000  # DeleteObjects limit
_URL_PARAMS = ("region", "kms_key_id")


class S3Store:
    """Objects below ``s3://bucket/prefix``.  Thread-safe: one boto3 client shared by threads.

    Args:
        bucket: the bucket.
        prefix: the session's prefix inside it (no leading or trailing ``/`` needed).
        region: the bucket's region (default: boto3's region).
        kms_key_id: encrypt with this KMS key (SSE-KMS) instead of S3-managed keys (SSE-S3).
        max_attempts: attempts per request, the first included; throttling (``SlowDown``) and
            transient errors are retried with exponential backoff and jitter in between.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        region: str | None = None,
        kms_key_id: str | None = None,
        max_attempts: int = _aws.MAX_ATTEMPTS,
    ):
        if not bucket or "/" in bucket:
            raise ConfigError(f"invalid S3 bucket name {bucket!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region
        self.kms_key_id = kms_key_id
        self.stats = RequestStats()
        self.list_page_size = 1000
        """Keys per ListObjectsV2 request (S3's maximum, 1000, unless a test lowers it)."""
        self._lock = threading.Lock()
        query = urlencode({k: v for k, v in (("region", region), ("kms_key_id", kms_key_id)) if v})
        self.url = f"s3://{bucket}/{quote(self.prefix)}" + (f"?{query}" if query else "")
        self._client = _aws.client("s3", region, max_pool_connections=32,
                                   max_attempts=max_attempts)
        # Counted on every HTTP request botocore sends, so multipart parts and retries count.
        self._client.meta.events.register("before-send.s3", self._count_request)
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNKSIZE,
            max_concurrency=4,
        )
        self._extra: dict[str, Any] = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
            if kms_key_id
            else {"ServerSideEncryption": "AES256"}
        )

    @classmethod
    def from_url(cls, url: str) -> S3Store:
        """Open ``s3://bucket/prefix?region=...&kms_key_id=...`` (query parameters optional)."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigError(f"not an s3://bucket/prefix URL: {url!r}")
        params = dict(parse_qsl(parsed.query))
        unknown = set(params) - set(_URL_PARAMS)
        if unknown:
            raise ConfigError(
                f"unknown parameters {sorted(unknown)} in {url!r}; valid: {', '.join(_URL_PARAMS)}"
            )
        return cls(
            parsed.netloc,
            unquote(parsed.path),
            region=params.get("region") or None,
            kms_key_id=params.get("kms_key_id") or None,
        )

    def _count_request(self, request: Any = None, event_name: str = "", **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1] if event_name else "unknown"
        with self._lock:
            self.stats.count(operation)

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"invalid key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key) if key else self.prefix}"

    def _fail(self, exc: BaseException, operation: str, key: str = "") -> Exception:
        return _aws.translate(
            exc, service="s3", operation=operation, resource=self._where(key), bucket=self.bucket
        )

    def put(self, key: str, data: Buffer | Chunks) -> None:
        full = self._key(key)
        parts, size = parts_of(data), size_of(data)
        sha256 = hashlib.sha256()
        for part in parts:
            sha256.update(part)
        digest = sha256.hexdigest()
        try:
            if size < MULTIPART_THRESHOLD:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=full,
                    Body=b"".join(parts),  # under 16 MiB
                    Metadata={_SHA256_META: digest},
                    ChecksumAlgorithm="SHA256",  # S3 checks the upload against this
                    **self._extra,
                )
            else:
                self._client.upload_fileobj(
                    _Reader(parts),
                    self.bucket,
                    full,
                    ExtraArgs={
                        "Metadata": {_SHA256_META: digest},
                        "ChecksumAlgorithm": "SHA256",
                        **self._extra,
                    },
                    Config=self._transfer,
                )
        except Exception as exc:
            raise self._fail(exc, "PutObject", key) from None
        with self._lock:
            self.stats.bytes_out += size

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """A conditional PutObject (``If-None-Match: *``): S3 refuses it if the key exists.

        Only for small objects (claims): a multipart upload is not used here.
        """
        full = self._key(key)
        digest = hashlib.sha256(data).hexdigest()
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*",
                Metadata={_SHA256_META: digest}, ChecksumAlgorithm="SHA256", **self._extra,
            )
        except Exception as exc:
            # 412: the object exists; 409: a concurrent conditional write to it is in flight
            # (S3 lets exactly one of them win, and it is not this one).
            if _aws.error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict",
                                        "412", "409"):
                return False
            raise self._fail(exc, "PutObject", key) from None
        with self._lock:
            self.stats.bytes_out += len(data)
        return True

    def get(self, key: str) -> bytes:
        full = self._key(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            data: bytes = response["Body"].read()
        except Exception as exc:
            if _aws.error_code(exc) in ("NoSuchKey", "404"):
                raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
            raise self._fail(exc, "GetObject", key) from None
        with self._lock:
            self.stats.bytes_in += len(data)
        expected = response.get("Metadata", {}).get(_SHA256_META)
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            raise StoreError(
                f"object {self._where(key)} is corrupt: its SHA-256 does not match the one written "
                f"with it ({len(data)} bytes read); retry, and if it persists delete the session "
                "with `starburst cleanup`"
            )
        return data

    def list(self, prefix: str, start_after: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        args: dict[str, Any] = {
            "Bucket": self.bucket, "Prefix": base + prefix, "MaxKeys": self.list_page_size}
        if start_after:
            args["StartAfter"] = base + start_after
        keys: list[str] = []
        try:
            while True:
                response = self._client.list_objects_v2(**args)
                keys.extend(item["Key"][len(base):] for item in response.get("Contents", ()))
                token = response.get("NextContinuationToken")
                if not response.get("IsTruncated") or not token:
                    break
                args["ContinuationToken"] = token
        except Exception as exc:
            raise _aws.translate(
                exc, service="s3", operation="ListObjectsV2",
                resource=f"s3://{self.bucket}/{base}{prefix}", bucket=self.bucket,
            ) from None
        keys.sort()  # S3 already lists in UTF-8 byte order; this keeps the promise explicit
        return keys

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        for start in range(0, len(keys), _DELETE_BATCH):
            chunk = keys[start:start + _DELETE_BATCH]
            try:
                response = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": base + k} for k in chunk], "Quiet": True},
                )
            except Exception as exc:
                raise self._fail(exc, "DeleteObjects", chunk[0]) from None
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StoreError(
                    f"could not delete {len(errors)} objects under {self._where()}/{prefix}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}; "
                    "retry with `starburst cleanup`"
                )

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"


class _Reader(io.RawIOBase):
    """A file reading the concatenation of ``parts`` without joining them."""

    def __init__(self, parts: list[Buffer]) -> None:
        self._parts = [memoryview(p).cast("B") for p in parts]
        self._index = 0
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(out) and self._index < len(self._parts):
            part = self._parts[self._index]
            n = min(len(out) - filled, len(part) - self._offset)
            out[filled:filled + n] = part[self._offset:self._offset + n]
            filled += n
            self._offset += n
            if self._offset == len(part):
                self._index, self._offset = self._index + 1, 0
        return filled
