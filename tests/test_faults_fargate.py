"""Fault tests on the emulated Fargate (issue 11): S3 failing in a worker mid-batch, a result
part the client cannot GET, an object planted in the bucket by someone who can write it.  Each
fails or retries its own batch only; the executor keeps working.  Faults are armed on events
(an S3 request for a given key, a batch object written), never on timers."""

from __future__ import annotations

import time
from typing import Any

from starburst_executor.errors import IntegrityError
from starburst_executor.testing import FargateEmulator
from starburst_executor.testing.aws_proxy import ProxyRequest, ProxyResponse

from .aws_fixtures import boto, fargate, moto_server  # noqa: F401
from .test_fargate_end_to_end import RELEASE, aws_setup, held_square, run  # noqa: F401

WAIT = 90.0


def _denied() -> ProxyResponse:
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            b"<Message>Access Denied</Message><RequestId>STARBURSTTEST</RequestId></Error>")
    return ProxyResponse(403, body, {"Content-Type": "application/xml"})


def _fail(fargate: FargateEmulator, operation: str, fragment: str) -> list[str]:
    """Refuse every S3 ``operation`` on a key containing ``fragment``; return the paths seen."""
    seen: list[str] = []

    def hook(request: ProxyRequest) -> ProxyResponse | None:
        if request.service == "s3" and request.operation == operation \
                and fragment in request.path:
            seen.append(request.path)
            return _denied()
        return None

    fargate.proxy.add_hook(hook)
    return seen


def _session_prefix(bucket: str, fargate: FargateEmulator) -> str:
    """The key prefix of the one session in ``bucket``, once its record is written."""
    s3 = boto("s3", fargate.moto)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            key = str(item["Key"])
            if key.endswith("/session.json"):
                return key[: -len("session.json")]
        time.sleep(0.05)
    raise AssertionError("no session was ever written")


def test_put_object_failing_in_a_worker_mid_batch_retries_the_batch(
    run: Any, fargate: FargateEmulator, aws_setup: dict[str, Any]
) -> None:
    refused = _fail(fargate, "PutObject", "/results/b000000000.1.")  # every part of try 1
    bucket = aws_setup["bucket"]
    boto("s3", fargate.moto).put_object(Bucket=bucket, Key=RELEASE, Body=b"")
    with run(max_workers=1, max_retries=1) as ex:
        results = list(ex.map(held_square, range(10), [bucket] * 10, chunksize=10))
        assert results == [x * x for x in range(10)]
        assert ex.usage().retries == 1
        assert ex.submit(held_square, 7, bucket).result(timeout=WAIT) == 49
    assert refused
    assert fargate.tasks[0].exit_code == 1  # the worker that could not write its results


def test_a_result_part_the_client_cannot_get_retries_its_batch_only(
    run: Any, fargate: FargateEmulator, aws_setup: dict[str, Any]
) -> None:
    refused = _fail(fargate, "GetObject", "/results/b000000000.1.00000")
    bucket = aws_setup["bucket"]
    boto("s3", fargate.moto).put_object(Bucket=bucket, Key=RELEASE, Body=b"")
    with run(max_workers=1, max_retries=1) as ex:
        first = ex.submit(held_square, 3, bucket)
        assert first.result(timeout=WAIT) == 9
        assert first.metadata.attempts == 2
        assert list(ex.map(held_square, range(4), [bucket] * 4)) == [0, 1, 4, 9]
    assert refused


def test_a_result_part_planted_in_the_bucket_is_never_unpickled(
    run: Any, fargate: FargateEmulator, aws_setup: dict[str, Any]
) -> None:
    bucket = aws_setup["bucket"]
    s3 = boto("s3", fargate.moto)
    with run(max_workers=1, max_retries=0) as ex:
        future = ex.submit(held_square, 3, bucket)  # its worker is held, results unwritten
        prefix = _session_prefix(bucket, fargate)
        # Someone who can write the bucket, not read the task's environment.
        key = "results/b000000000.1.00000"
        s3.put_object(Bucket=bucket, Key=prefix + key, Body=b"SBX1" + b"\x80\x05planted." * 4)
        error = future.exception(timeout=WAIT)
        assert isinstance(error, IntegrityError), repr(error)
        assert error.key == key
        s3.put_object(Bucket=bucket, Key=RELEASE, Body=b"")
        assert ex.submit(held_square, 5, bucket).result(timeout=WAIT) == 25
