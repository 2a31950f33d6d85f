"""FargateExecutor(backend="fargate") on the emulated Fargate: moto for the AWS APIs, worker
subprocesses for the tasks, faults injected by the emulator.  Each fault ends in correct results
after a retry, or in a clear error on the affected futures, in bounded time; after shutdown no
task is left running."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from starburst_executor import FargateExecutor
from starburst_executor.errors import WorkerLost
from starburst_executor.launch.fargate.launcher import FargateLauncher
from starburst_executor.testing import FargateEmulator
from starburst_executor.testing.aws_proxy import ProxyRequest

from .aws_fixtures import (  # noqa: F401
    REGION, boto, fargate, make_bucket, make_cluster, moto_server)


RELEASE = "test-release"  # the key whose existence lets held calls return


def square(x: int) -> int:
    return x * x


def slow_square(x: int) -> int:
    time.sleep(0.02)
    return x * x


def held_square(x: int, bucket: str) -> int:
    """x * x once the test has put ``RELEASE`` in ``bucket``: a worker running it is busy until
    then, so a fault armed on the batch's start always finds the work unfinished."""
    import boto3
    import botocore.exceptions

    s3 = boto3.client("s3")
    while True:
        try:
            s3.head_object(Bucket=bucket, Key=RELEASE)
            return x * x
        except botocore.exceptions.ClientError:
            time.sleep(0.05)


def release_after_first_task_stopped(fargate: FargateEmulator, bucket: str) -> None:
    """Wait until the first task (the faulty one) stopped, then let the held calls return."""
    deadline = time.monotonic() + 60
    while not (fargate.tasks and fargate.tasks[0].stopped):
        assert time.monotonic() < deadline, f"the fault never struck: {fargate.tasks}"
        time.sleep(0.05)
    boto("s3", fargate.moto).put_object(Bucket=bucket, Key=RELEASE, Body=b"")


@pytest.fixture
def aws_setup(fargate: FargateEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    # Poll faster than on AWS (tasks start in a second here, not a minute).
    monkeypatch.setattr(FargateLauncher, "poll_interval", (0.05, 0.5))
    return dict(backend="fargate", region=REGION, bucket=make_bucket(fargate.moto),
                cluster=make_cluster(fargate.moto), image="example/worker:1", cpu=0.25,
                memory=512)


@pytest.fixture
def run(fargate: FargateEmulator, aws_setup: dict[str, Any]) -> Iterator[Any]:
    """run(**settings) -> FargateExecutor; checks at the end that no task is left running."""
    executors: list[FargateExecutor] = []

    def make(**settings: Any) -> FargateExecutor:
        ex = FargateExecutor(**{**aws_setup, **settings})
        executors.append(ex)
        return ex

    yield make
    for ex in executors:
        ex.shutdown(wait=True)
    assert fargate.wait_stopped(15), f"tasks still running: {fargate.running()}"


def test_map_on_fargate(run: Any, fargate: FargateEmulator) -> None:
    with run(max_workers=2) as ex:
        assert list(ex.map(slow_square, range(60), chunksize=10)) == [
            x * x for x in range(60)]
        usage = ex.usage()
    assert 1 <= len(fargate.tasks) <= 2  # 6 batches, at most 2 workers: warm reuse
    assert usage.tasks_launched == len(fargate.tasks)
    assert usage.calls == 60
    assert usage.requests.get("ecs.RunTask") == len(fargate.tasks)


def test_first_results_are_read_as_soon_as_their_workers_are_seen_running(
        run: Any, fargate: FargateEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # As on AWS when a cold start ends between two looks at the tasks: the client sees the
    # workers running only once their first calls have ended (every DescribeTasks waits).
    # And as on AWS, a hand-off takes no longer than the shortest poll: an untimed call seen
    # running counts as long at once (one more call is queued behind it).
    monkeypatch.setattr(FargateLauncher, "poll_interval", (0.2, 1.0))
    ended: set[str] = set()
    both_ended = threading.Event()

    def observe(request: ProxyRequest, status: int, body: bytes) -> None:
        if request.operation == "PutObject" and "/results/" in request.path:
            ended.add(request.path.split("/results/")[1].split(".")[0])
            if len(ended) >= 2:
                both_ended.set()

    def hold(request: ProxyRequest) -> None:
        if request.operation == "DescribeTasks":
            both_ended.wait(30)

    fargate.proxy.add_observer(observe)
    fargate.proxy.add_hook(hold)
    with run(max_workers=2) as ex:
        assert list(ex.map(square, range(100))) == [x * x for x in range(100)]
        # Their durations were known as soon as the workers were seen running: the other 98
        # (trivial) calls went in one batch, not after one more untimed call queued behind
        # each first one.
        assert ex.usage().batches == 3


def test_oom_is_retried(run: Any, fargate: FargateEmulator, aws_setup: dict[str, Any]) -> None:
    fargate.inject("oom", when_output="attempt")  # killed once it runs its batch
    bucket = aws_setup["bucket"]
    with run(max_workers=1) as ex:
        results = ex.map(held_square, range(20), [bucket] * 20, chunksize=20)
        release_after_first_task_stopped(fargate, bucket)
        assert list(results) == [x * x for x in range(20)]
        assert ex.usage().retries >= 1
    assert fargate.tasks[0].exit_code == 137


def test_oom_every_time_fails_the_batch_with_the_reason(run: Any,
                                                        fargate: FargateEmulator) -> None:
    fargate.inject("oom", times=10, when_output="attempt", after=0.2)  # once a batch runs
    started = time.monotonic()
    with run(max_workers=1, max_retries=1) as ex:
        errors = [ex.submit(time.sleep, 10).exception(timeout=60)]
    assert time.monotonic() - started < 60
    error = errors[0]
    assert isinstance(error, WorkerLost)
    assert error.exit_code == 137
    assert "OutOfMemoryError" in (error.stopped_reason or "")
    assert "memory=" in str(error)
    assert "starburst worker" in error.log_tail  # the task's CloudWatch log stream


def test_spot_interruption_is_retried_without_using_a_retry(run: Any,
                                                            fargate: FargateEmulator,
                                                            aws_setup: dict[str, Any]) -> None:
    fargate.inject("spot_interruption", when_output="attempt")
    bucket = aws_setup["bucket"]
    with run(max_workers=1, spot=True, max_retries=0) as ex:
        results = ex.map(held_square, range(20), [bucket] * 20, chunksize=20)
        release_after_first_task_stopped(fargate, bucket)
        assert list(results) == [x * x for x in range(20)]
    assert fargate.tasks[0].stop_code == "SpotInterruption"
    assert all(t.spot for t in fargate.tasks)


def test_task_that_never_starts_is_replaced(run: Any, fargate: FargateEmulator) -> None:
    fargate.inject("never_starts")
    with run(max_workers=1, start_timeout=2) as ex:
        assert list(ex.map(slow_square, range(5), chunksize=5)) == [x * x for x in range(5)]
    stuck = fargate.tasks[0]
    assert stuck.started_at is None and stuck.stop_code == "UserInitiated"
    assert len(fargate.tasks) >= 2


def test_batch_past_task_timeout_is_stopped(run: Any, fargate: FargateEmulator) -> None:
    with run(max_workers=1, task_timeout=1, max_retries=0) as ex:
        error = ex.submit(time.sleep, 60).exception(timeout=60)
    assert isinstance(error, WorkerLost)
    assert "task_timeout" in str(error) and error.stop_code == "UserInitiated"
    assert fargate.proxy.requests[("ecs", "StopTask")] >= 1


def test_run_task_capacity_failures_are_retried(run: Any, fargate: FargateEmulator) -> None:
    fargate.fail_run_task("RESOURCE:FARGATE", times=1)
    with run(max_workers=1) as ex:
        assert list(ex.map(slow_square, range(5))) == [x * x for x in range(5)]
    assert fargate.proxy.injected[("ecs", "RunTask")] == 1


def test_run_task_refusal_fails_the_futures_clearly(run: Any, fargate: FargateEmulator) -> None:
    fargate.fail_run_task("ATTRIBUTE", times=50, detail="no such platform")
    with run(max_workers=1) as ex:
        future = ex.submit(slow_square, 3)
        error = future.exception(timeout=60)
    assert error is not None and "ATTRIBUTE" in str(error)
    assert not fargate.tasks


def test_s3_slow_down_is_absorbed(run: Any, fargate: FargateEmulator) -> None:
    fargate.s3_slow_down(times=2)
    with run(max_workers=1) as ex:
        assert list(ex.map(slow_square, range(10))) == [x * x for x in range(10)]
    assert sum(n for (s, _), n in fargate.proxy.injected.items() if s == "s3") == 2


def test_error_in_the_with_block_stops_every_task(run: Any, fargate: FargateEmulator) -> None:
    with pytest.raises(KeyError):
        with run(max_workers=2) as ex:
            futures = [ex.submit(time.sleep, 30) for _ in range(2)]
            deadline = time.monotonic() + 30
            while len([t for t in fargate.tasks if t.started_at]) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            raise KeyError("boom")
    assert fargate.wait_stopped(10)
    assert all(f.done() for f in futures)
    assert all(t.stop_code == "UserInitiated" for t in fargate.tasks)


# -- real containers (skipped without a Docker daemon) ---------------------------------------

from .aws_fixtures import boto_worker_image  # noqa: E402, F401
from .docker_fixtures import base_image, docker_client  # noqa: E402, F401


def test_map_in_real_containers(run: Any, fargate: FargateEmulator, docker_client: Any,
                                boto_worker_image: str, aws_setup: dict[str, Any]) -> None:
    from starburst_executor.testing import DockerRunner

    fargate.runner = DockerRunner(docker_client)
    fargate.inject("oom", when_output="attempt")  # the first container, once it runs a batch
    bucket = aws_setup["bucket"]
    with run(max_workers=2, image=boto_worker_image) as ex:
        results = ex.map(held_square, range(40), [bucket] * 40, chunksize=10)
        release_after_first_task_stopped(fargate, bucket)
        assert list(results) == [x * x for x in range(40)]
    assert fargate.tasks[0].exit_code == 137
    assert fargate.wait_stopped(30)


def test_vcpu_quota_runs_the_work_in_waves(run: Any, fargate: FargateEmulator,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 workers x 1 vCPU wanted, 2 vCPUs of quota: at most 2 tasks at once, and a warning
    # that says how to ask for more.
    monkeypatch.setenv("STARBURST_FARGATE_VCPU_QUOTA", "2")
    with pytest.warns(UserWarning, match="quota"):
        with run(max_workers=4, cpu=1, memory=2048, idle_timeout=0.5) as ex:
            assert list(ex.map(slow_square, range(40), chunksize=5)) == [
                x * x for x in range(40)]
    spans = [(t.started_at, t.stopped_at or time.time()) for t in fargate.tasks if t.started_at]
    assert spans
    most = max(sum(1 for a, b in spans if a <= start < b) for start, _ in spans)
    assert most <= 2


def prints_and_reports_threads(x: int) -> str | None:
    import logging
    import os

    print(f"on fargate {x}")
    logging.warning("logged %d", x)
    return os.environ.get("OMP_NUM_THREADS")


def test_output_and_thread_caps_on_fargate(run: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with run(max_workers=1, cpu=4, memory=8192) as ex:
        future = ex.submit(prints_and_reports_threads, 7)
        assert future.result(timeout=60) == "4"  # the task's vCPUs, not the host's cores
    out, err = capsys.readouterr()
    assert "[call 0] on fargate 7" in out.splitlines()
    assert "[call 0] WARNING:root:logged 7" in err.splitlines()
    assert future.metadata.output == (("stdout", "on fargate 7\n"),
                                      ("stderr", "WARNING:root:logged 7\n"))


def test_cached_functions_of_main_run_on_fargate(run: Any) -> None:
    # The worker unpickles what cloudpickle alone cannot send (issue 10, item 4).
    source = ("import functools\n"
              "@functools.lru_cache(maxsize=None)\n"
              "def fib(n):\n"
              "    return n if n < 2 else fib(n - 1) + fib(n - 2)\n")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "<notebook-cell>", "exec"), namespace)
    ex = run(max_workers=1)
    assert list(ex.map(namespace["fib"], [10, 30])) == [55, 832040]
