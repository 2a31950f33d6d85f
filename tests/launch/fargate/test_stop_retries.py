"""StopTask failing (issue 11, item 5): retried with backoff, bounded, and a task that could not
be stopped is warned of, counted in usage() and kept in the cost, on the emulated Fargate."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from starburst_executor import FargateExecutor
from starburst_executor.engine.ledger import Ledger
from starburst_executor._stats import RequestStats
from starburst_executor.errors import WorkerLost
from starburst_executor.launch.base import TaskHandle, TaskPhase
from starburst_executor.launch.fargate import stopping
from starburst_executor.launch.fargate.launcher import FargateLauncher
from starburst_executor.storage.s3 import S3Store
from starburst_executor.testing import FargateEmulator
from starburst_executor.testing.aws_proxy import ProxyRequest, ProxyResponse

from ...aws_fixtures import (  # noqa: F401
    REGION, boto, fargate, fargate_config, make_bucket, make_cluster, moto_server, sleeper, unique)
from ...contracts.launcher_contract import _spec


class StopTaskFault:
    """Answers StopTask with an error ``times`` times (None: until ``heal()``)."""

    def __init__(self, code: str = "ThrottlingException", status: int = 400,
                 times: int | None = None) -> None:
        self.code, self.status, self.left = code, status, times
        self.healed = threading.Event()
        self.failed = 0

    def heal(self) -> None:
        self.healed.set()

    def __call__(self, request: ProxyRequest) -> ProxyResponse | None:
        if request.operation != "StopTask" or self.healed.is_set():
            return None
        if self.left is not None:
            if self.left <= 0:
                return None
            self.left -= 1
        self.failed += 1
        body = json.dumps({"__type": self.code, "message": "injected by the test"}).encode()
        return ProxyResponse(self.status, body, {"Content-Type": "application/x-amz-json-1.1"})


@pytest.fixture
def setup_(fargate: FargateEmulator) -> tuple[str, str, S3Store]:
    bucket, cluster = make_bucket(fargate.moto), make_cluster(fargate.moto)
    store = S3Store(bucket, "starburst/sessions/" + unique("s"), region=REGION)
    return cluster, bucket, store


@pytest.fixture
def running(fargate: FargateEmulator, setup_: tuple[str, str, S3Store]
            ) -> Iterator[tuple[FargateLauncher, TaskHandle]]:
    cluster, bucket, store = setup_
    fargate.runner = sleeper(60)
    launcher = FargateLauncher.from_config(fargate_config(cluster, bucket), "st", store.url,
                                           max_attempts=2)
    (handle,) = launcher.launch([_spec(store, idle=600)])
    assert isinstance(handle, TaskHandle)
    deadline = time.monotonic() + 20
    while launcher.poll([handle])[0].phase is not TaskPhase.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield launcher, handle
    launcher.close()


def _wait(predicate, seconds: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_throttled_stop_is_retried_past_botocore(
        fargate: FargateEmulator, running: tuple[FargateLauncher, TaskHandle]) -> None:
    launcher, handle = running
    fault = StopTaskFault(times=3)  # botocore tries twice (max_attempts=2): a second round
    fargate.proxy.add_hook(fault)
    launcher.stop([handle], "test")
    assert fault.failed == 3 and fargate.proxy.requests[("ecs", "StopTask")] == 4
    assert launcher.stats.not_stopped == {}
    _wait(lambda: launcher.poll([handle])[0].phase is TaskPhase.STOPPED)
    assert launcher.poll([handle])[0].stop_code == "UserInitiated"


def test_a_task_that_cannot_be_stopped_is_reported_then_stopped_at_close(
        fargate: FargateEmulator, running: tuple[FargateLauncher, TaskHandle]) -> None:
    launcher, handle = running
    fault = StopTaskFault(code="ServerException", status=500)
    fargate.proxy.add_hook(fault)
    started = time.monotonic()
    with pytest.warns(RuntimeWarning, match="could not stop Fargate task") as caught:
        launcher.stop([handle], "task_timeout")
    assert time.monotonic() - started < stopping.STOP_DEADLINE + 10  # bounded
    text = str(caught[0].message)
    assert handle.task_id in text and "starburst cleanup" in text and "billing" in text
    assert fault.failed == 2 * stopping.STOP_ROUNDS  # every round, each retried by botocore
    assert launcher.stats.not_stopped == {handle.worker_id: handle.task_id}
    # The manager is told it stopped, with why, so nothing waits on it forever...
    (state,) = launcher.poll([handle])
    assert state.phase is TaskPhase.STOPPED and state.stop_code == "StopTaskFailed"
    assert "may still be running" in (state.stopped_reason or "")
    # ... though it still runs, and asking again does not block.
    assert not fargate.tasks[0].stopped
    launcher.stop([handle], "task_timeout")
    assert fault.failed == 2 * stopping.STOP_ROUNDS
    fault.heal()
    launcher.close()  # tries the ones left once more
    assert launcher.stats.not_stopped == {}
    _wait(lambda: fargate.tasks[0].stopped)


def test_access_denied_is_not_retried(
        fargate: FargateEmulator, running: tuple[FargateLauncher, TaskHandle]) -> None:
    launcher, handle = running
    fault = StopTaskFault(code="AccessDeniedException")
    fargate.proxy.add_hook(fault)
    with pytest.warns(RuntimeWarning, match="AccessDeniedException"):
        launcher.stop([handle], "test")
    assert fault.failed == 1
    fault.heal()


def test_the_ledger_bills_a_task_not_stopped_until_now() -> None:
    stats = RequestStats()
    ledger = Ledger(lambda seconds: seconds, None, launcher_stats=stats)
    ledger.open_span("w1")
    ledger.end_span("w1")
    ended, _ = ledger.billed()
    stats.not_stopped["w1"] = "arn:task/1"
    time.sleep(0.05)
    seconds, cost = ledger.billed()
    assert seconds > ended + 0.04 and cost == seconds
    usage = ledger.usage(0, RequestStats(), stats)
    assert usage.tasks_not_stopped == 1


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_executor_moves_on_and_counts_the_task(
        fargate: FargateEmulator, setup_: tuple[str, str, S3Store],
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, bucket, _ = setup_
    monkeypatch.setattr(FargateLauncher, "poll_interval", (0.05, 0.5))
    fault = StopTaskFault(code="ServerException", status=500)
    fargate.proxy.add_hook(fault)
    settings = dict(backend="fargate", region=REGION, bucket=bucket, cluster=cluster,
                    image="example/worker:1", cpu=0.25, memory=512)
    started = time.monotonic()
    with pytest.warns(RuntimeWarning, match="could not stop Fargate task"):
        with FargateExecutor(max_workers=1, task_timeout=1, max_retries=0, **settings) as ex:
            error = ex.submit(slow, 60).exception(timeout=90)
    assert time.monotonic() - started < 90  # neither the batch nor shutdown waited on it
    assert isinstance(error, WorkerLost) and "StopTaskFailed" in str(error)
    usage = ex.usage()
    assert usage.tasks_not_stopped == 1
    assert usage.cost is not None and usage.cost > 0
    time.sleep(0.1)
    assert ex.usage().task_seconds > usage.task_seconds + 0.05  # still billing, as far as known
    fault.heal()
    import boto3  # through the emulator's proxy (AWS_ENDPOINT_URL), as `starburst cleanup`

    boto3.client("ecs", region_name=REGION).stop_task(cluster=cluster, task=fargate.tasks[0].arn)
    assert fargate.wait_stopped(15)
