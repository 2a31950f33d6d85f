"""The emulated Fargate data plane, driven with plain boto3 as a user's own code would."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest

from starburst_executor.testing import FargateEmulator

from ..aws_fixtures import REGION, fargate, make_bucket, make_cluster, moto_server  # noqa: F401

# A container that says "up" and then runs until it is stopped: faults armed on "up" always
# find it running.
SLEEP_AFTER_UP = "import time; print('up', flush=True); time.sleep(600)"


def _client(service: str, fargate: FargateEmulator, **config: Any) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=fargate.proxy.endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=botocore.config.Config(**config))


def _run(fargate: FargateEmulator, cluster: str, command: list[str],
         env: dict[str, str] | None = None, count: int = 1) -> list[str]:
    ecs = _client("ecs", fargate)
    subnet = _client("ec2", fargate).describe_subnets()["Subnets"][0]["SubnetId"]
    ecs.register_task_definition(
        family="emu", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256",
        memory="512", containerDefinitions=[{
            "name": "main", "image": "example/image:1", "memory": 512,
            "command": ["python", "-c", "print('default command')"],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/emu", "awslogs-region": REGION,
                "awslogs-stream-prefix": "p", "awslogs-create-group": "true"}}}])
    answer = ecs.run_task(
        cluster=cluster, taskDefinition="emu", launchType="FARGATE", count=count,
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet],
                                                      "securityGroups": ["sg-1"]}},
        overrides={"containerOverrides": [{
            "name": "main", "command": command,
            "environment": [{"name": k, "value": v} for k, v in (env or {}).items()]}]})
    return [t["taskArn"] for t in answer["tasks"]] + [f["reason"] for f in answer["failures"]]


def _wait(fargate: FargateEmulator, cluster: str, arn: str, status: str = "STOPPED",
          timeout: float = 20) -> dict[str, Any]:
    ecs = _client("ecs", fargate)
    deadline = time.monotonic() + timeout
    while True:
        task = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        if task["lastStatus"] == status:
            return dict(task)
        assert time.monotonic() < deadline, task["lastStatus"]
        time.sleep(0.05)


def _wait_output(fargate: FargateEmulator, arn: str, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        task = next((t for t in fargate.tasks if t.arn == arn), None)
        if task is not None and task.container is not None and text in task.container.output():
            return
        assert time.monotonic() < deadline, f"{arn} never printed {text!r}"
        time.sleep(0.05)


@pytest.fixture
def cluster(fargate: FargateEmulator) -> str:
    return make_cluster(fargate.moto)


def test_runs_the_command_with_its_environment_and_reports_the_exit_code(
        fargate: FargateEmulator, cluster: str) -> None:
    (arn,) = _run(fargate, cluster, [
        "python", "-c", "import os, sys; print('hello', os.environ['GREETING']); sys.exit(3)"],
        {"GREETING": "world"})
    task = _wait(fargate, cluster, arn)
    assert task["containers"][0]["exitCode"] == 3
    assert task["stopCode"] == "EssentialContainerExited"
    assert task["startedAt"] <= task["stoppedAt"]
    events = _client("logs", fargate).get_log_events(
        logGroupName="/emu", logStreamName=f"p/main/{arn.rsplit('/', 1)[-1]}")["events"]
    assert [e["message"] for e in events] == ["hello world"]


def test_containers_reach_moto_through_the_proxy(fargate: FargateEmulator,
                                                cluster: str) -> None:
    bucket = make_bucket(fargate.moto)
    code = (f"import boto3; boto3.client('s3').put_object(Bucket='{bucket}', Key='k', "
            "Body=b'from the task')")
    (arn,) = _run(fargate, cluster, ["python", "-c", code])
    assert _wait(fargate, cluster, arn)["containers"][0]["exitCode"] == 0
    body = _client("s3", fargate).get_object(Bucket=bucket, Key="k")["Body"].read()
    assert body == b"from the task"
    assert fargate.proxy.requests[("s3", "PutObject")] == 1


def test_oom(fargate: FargateEmulator, cluster: str) -> None:
    fargate.inject("oom", when_output="up")
    (arn,) = _run(fargate, cluster, ["python", "-c", SLEEP_AFTER_UP])
    task = _wait(fargate, cluster, arn)
    assert task["containers"][0]["exitCode"] == 137
    assert task["containers"][0]["reason"].startswith("OutOfMemoryError")
    assert task["stoppedReason"] == "Essential container in task exited"


def test_spot_interruption(fargate: FargateEmulator, cluster: str) -> None:
    fargate.inject("spot_interruption", when_output="up")
    (arn,) = _run(fargate, cluster, ["python", "-c", SLEEP_AFTER_UP])
    task = _wait(fargate, cluster, arn)
    assert task["stopCode"] == "SpotInterruption"
    assert task["containers"][0]["exitCode"] == 143  # SIGTERM


def test_never_starts_until_stopped(fargate: FargateEmulator, cluster: str) -> None:
    fargate.inject("never_starts")
    (arn,) = _run(fargate, cluster, ["python", "-c", "print('never')"])
    time.sleep(0.3)
    assert _wait(fargate, cluster, arn, "PENDING")["lastStatus"] == "PENDING"
    _client("ecs", fargate).stop_task(cluster=cluster, task=arn, reason="gave up")
    task = _wait(fargate, cluster, arn)
    assert task["stopCode"] == "UserInitiated" and task["stoppedReason"] == "gave up"
    assert "exitCode" not in task["containers"][0]


def test_stop_task_signals_a_running_container(fargate: FargateEmulator, cluster: str) -> None:
    (arn,) = _run(fargate, cluster, ["python", "-c", "import time; time.sleep(30)"])
    _wait(fargate, cluster, arn, "RUNNING")
    _client("ecs", fargate).stop_task(cluster=cluster, task=arn, reason="enough")
    task = _wait(fargate, cluster, arn)
    assert task["stopCode"] == "UserInitiated"
    assert task["containers"][0]["exitCode"] == 143


def test_a_stop_while_the_container_starts_is_not_lost(fargate: FargateEmulator,
                                                     cluster: str) -> None:
    """A StopTask answered while the data plane is starting the container (RunTask then an
    immediate close, as a launcher does) ends the task and its container; both were left
    running."""
    runner, stop_sent = fargate.runner, threading.Event()

    def stop_mid_start(spec: Any) -> Any:
        _client("ecs", fargate).stop_task(cluster=cluster, task=spec.task_arn, reason="x")
        stop_sent.set()
        return runner(spec)

    fargate.runner = stop_mid_start
    (arn,) = _run(fargate, cluster, ["python", "-c", "import time; time.sleep(30)"])
    assert stop_sent.wait(10)
    (record,) = (t for t in fargate.tasks if t.arn == arn)
    deadline = time.monotonic() + 10
    while record.container is None or record.container.poll() is None:
        assert time.monotonic() < deadline, "the container outlived its StopTask"
        time.sleep(0.05)
    task = _wait(fargate, cluster, arn)
    assert task["stopCode"] == "UserInitiated" and task["stoppedReason"] == "x"


def test_stop_kills_what_ignores_sigterm(fargate: FargateEmulator, cluster: str) -> None:
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(30)")
    (arn,) = _run(fargate, cluster, ["python", "-c", code])
    _wait_output(fargate, arn, "up")  # SIGTERM is ignored from here on
    _client("ecs", fargate).stop_task(cluster=cluster, task=arn, reason="now")
    task = _wait(fargate, cluster, arn, timeout=10)
    assert task["containers"][0]["exitCode"] == 137


def test_cannot_pull(fargate: FargateEmulator, cluster: str) -> None:
    fargate.inject("cannot_pull")
    (arn,) = _run(fargate, cluster, ["python", "-c", "print('never')"])
    task = _wait(fargate, cluster, arn)
    assert task["stopCode"] == "TaskFailedToStart"
    assert "CannotPullContainerError" in task["stoppedReason"]


def test_run_task_failures(fargate: FargateEmulator, cluster: str) -> None:
    fargate.fail_run_task("RESOURCE:FARGATE", times=1)
    assert _run(fargate, cluster, ["python", "-c", "pass"], count=2) == [
        "RESOURCE:FARGATE", "RESOURCE:FARGATE"]
    assert len(_run(fargate, cluster, ["python", "-c", "pass"])) == 1
    assert fargate.proxy.injected[("ecs", "RunTask")] == 1


def test_s3_slow_down(fargate: FargateEmulator) -> None:
    bucket = make_bucket(fargate.moto)
    s3 = _client("s3", fargate, retries={"total_max_attempts": 1, "mode": "standard"})
    fargate.s3_slow_down(times=1, operation="PutObject")
    with pytest.raises(botocore.exceptions.ClientError, match="SlowDown"):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")


def test_stop_ends_every_task(moto_server: Any) -> None:
    with FargateEmulator(moto_server) as emulator:
        cluster = make_cluster(moto_server)
        arns = _run(emulator, cluster, ["python", "-c", "import time; time.sleep(30)"], count=2)
        for arn in arns:
            _wait(emulator, cluster, arn, "RUNNING")
    assert not emulator.running()
    assert [t.exit_code for t in emulator.tasks] == [137, 137], emulator.tasks


def test_a_task_is_provisioning_from_run_tasks_answer(moto_server: Any) -> None:
    # The data plane looks at moto once a minute here: the task is not taken up yet.
    with FargateEmulator(moto_server, interval=60) as emulator:
        cluster = make_cluster(moto_server)
        (arn,) = _run(emulator, cluster, ["python", "-c", "print('never run')"])
        task = _client("ecs", emulator).describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        assert task["lastStatus"] == "PROVISIONING"  # moto alone says RUNNING at once
        assert emulator.tasks == []


def test_a_modelled_cold_start_keeps_a_task_pending(fargate: FargateEmulator,
                                                    cluster: str) -> None:
    fargate.cold_start = 600.0
    (slow,) = _run(fargate, cluster, ["python", "-c", "print('late')"])
    deadline = time.monotonic() + 20  # adopted (its cold start fixed) before the next one
    while not any(t.arn == slow and t.starts_at for t in fargate.tasks):
        assert time.monotonic() < deadline, "the emulator never took the task up"
        time.sleep(0.02)
    fargate.cold_start = 0.2
    (quick,) = _run(fargate, cluster, ["python", "-c", "print('soon')"])
    assert _wait(fargate, cluster, quick)["containers"][0]["exitCode"] == 0
    task = next(t for t in fargate.tasks if t.arn == quick)
    assert task.started_at is not None and task.starts_at is not None
    assert task.started_at >= task.starts_at
    assert _wait(fargate, cluster, slow, "PENDING")["lastStatus"] == "PENDING"
    _client("ecs", fargate).stop_task(cluster=cluster, task=slow, reason="gave up")
    assert "exitCode" not in _wait(fargate, cluster, slow)["containers"][0]


def test_a_container_may_boot_during_its_cold_start(fargate: FargateEmulator,
                                                    cluster: str) -> None:
    """It starts at RunTask, but its AWS requests wait for RUNNING plus the modelled boot,
    and they are counted as its own."""
    bucket = make_bucket(fargate.moto)
    fargate.cold_start, fargate.boot_during_cold_start, fargate.boot = 600.0, True, 0.3
    code = (f"import boto3, time; s3 = boto3.client('s3'); print('booted', flush=True); "
            f"s3.put_object(Bucket='{bucket}', Key='k', Body=b'x'); "
            "print('sent', time.time(), flush=True)")
    (arn,) = _run(fargate, cluster, ["python", "-c", code])
    _wait_output(fargate, arn, "booted")
    task = next(t for t in fargate.tasks if t.arn == arn)
    wait_for = time.monotonic() + 20
    while not fargate.task_requests(task) and time.monotonic() < wait_for:
        time.sleep(0.02)
    assert fargate.task_requests(task) == {("s3", "PutObject"): 1}  # sent, and held
    assert task.started_at is None and task.container is not None
    assert "sent" not in task.container.output()
    assert _client("ecs", fargate).describe_tasks(
        cluster=cluster, tasks=[arn])["tasks"][0]["lastStatus"] == "PENDING"
    task.starts_at = time.time()  # its cold start ends now
    assert _wait(fargate, cluster, arn)["containers"][0]["exitCode"] == 0
    assert task.started_at is not None and task.started_at >= task.starts_at
    sent = float(task.container.output().split("sent")[1])
    assert sent >= task.started_at + 0.3
    assert fargate.proxy.by_caller["testing"][("ecs", "RunTask")] == 1


def test_modelled_request_latency(fargate: FargateEmulator) -> None:
    bucket = make_bucket(fargate.moto)
    s3 = _client("s3", fargate)
    fargate.proxy.set_latency(0.3, "s3")
    started = time.monotonic()
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert time.monotonic() - started >= 0.3
    fargate.proxy.set_latency(0.0, "s3")


def test_unknown_fault(fargate: FargateEmulator) -> None:
    with pytest.raises(ValueError, match="oom"):
        fargate.inject("gremlins")


# -- real containers (skipped without a Docker daemon) ---------------------------------------

from ..aws_fixtures import boto_worker_image  # noqa: E402, F401
from ..docker_fixtures import base_image, docker_client  # noqa: E402, F401


def test_docker_runner_runs_the_container(fargate: FargateEmulator, cluster: str,
                                          docker_client: Any, boto_worker_image: str) -> None:
    from starburst_executor.testing import DockerRunner

    fargate.runner = DockerRunner(docker_client, image=boto_worker_image)
    bucket = make_bucket(fargate.moto)
    code = (f"import boto3, sys; boto3.client('s3').put_object(Bucket='{bucket}', Key='k', "
            "Body=b'from a container'); print('done'); sys.exit(4)")
    (arn,) = _run(fargate, cluster, ["python", "-c", code])
    task = _wait(fargate, cluster, arn, timeout=60)
    assert task["containers"][0]["exitCode"] == 4
    body = _client("s3", fargate).get_object(Bucket=bucket, Key="k")["Body"].read()
    assert body == b"from a container"
    events = _client("logs", fargate).get_log_events(
        logGroupName="/emu", logStreamName=f"p/main/{arn.rsplit('/', 1)[-1]}")["events"]
    assert [e["message"] for e in events] == ["done"]


def test_docker_runner_oom_kills_the_container(fargate: FargateEmulator, cluster: str,
                                               docker_client: Any,
                                               boto_worker_image: str) -> None:
    from starburst_executor.testing import DockerRunner

    fargate.runner = DockerRunner(docker_client, image=boto_worker_image)
    fargate.inject("oom", when_output="up")
    (arn,) = _run(fargate, cluster, ["python", "-c", SLEEP_AFTER_UP])
    task = _wait(fargate, cluster, arn, timeout=60)
    assert task["containers"][0]["exitCode"] == 137
    assert task["containers"][0]["reason"].startswith("OutOfMemoryError")


def test_a_missing_log_group_fails_the_start_unless_the_task_may_create_it(
        fargate: FargateEmulator, cluster: str) -> None:
    ecs = _client("ecs", fargate)
    subnet = _client("ec2", fargate).describe_subnets()["Subnets"][0]["SubnetId"]
    ecs.register_task_definition(
        family="emu-nolog", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="256", memory="512", containerDefinitions=[{
            "name": "main", "image": "example/image:1", "memory": 512,
            "command": ["python", "-c", "print('never runs')"],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/emu-missing", "awslogs-region": REGION,
                "awslogs-stream-prefix": "p"}}}])
    (task,) = ecs.run_task(
        cluster=cluster, taskDefinition="emu-nolog", launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet],
                                                      "securityGroups": ["sg-1"]}})["tasks"]
    stopped = _wait(fargate, cluster, task["taskArn"])
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert "log group does not exist" in stopped["stoppedReason"]
