from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from starburst_executor import _auth, _keys
from starburst_executor.config import Config
from starburst_executor.errors import ConfigError
from starburst_executor.launch.base import LaunchFailure, TaskHandle, TaskPhase, WorkerSpec
from starburst_executor.launch.fargate import taskdef
from starburst_executor.launch.fargate.launcher import FargateLauncher, _Pace
from starburst_executor.storage.s3 import S3Store
from starburst_executor.testing import FargateEmulator
from starburst_executor.testing.aws_proxy import ProxyRequest

from ...aws_fixtures import (  # noqa: F401
    REGION, boto, fargate, fargate_config, make_bucket, make_cluster, moto_server, sleeper, unique)
from ...contracts.launcher_contract import LauncherContract, _spec, _wait_stopped
from ...test_faults import wait_for


@pytest.fixture
def cluster(fargate: FargateEmulator) -> str:
    return make_cluster(fargate.moto)


@pytest.fixture
def bucket(fargate: FargateEmulator) -> str:
    return make_bucket(fargate.moto)


@pytest.fixture
def store(bucket: str) -> Iterator[S3Store]:
    s = S3Store(bucket, "starburst/sessions/" + unique("s"), region=REGION)
    yield s
    s.close()


@pytest.fixture
def launcher(cluster: str, bucket: str, store: S3Store) -> Iterator[FargateLauncher]:
    launcher = FargateLauncher.from_config(fargate_config(cluster, bucket), "sess-1", store.url)
    yield launcher
    launcher.close()


class TestFargateLauncher(LauncherContract):
    startup_seconds = 20.0


def _idle_spec(store: S3Store, idle: float = 600) -> WorkerSpec:
    return _spec(store, idle=idle)


# -- validation, no network -----------------------------------------------------------------

def test_from_config_validates_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    config = fargate_config("c", "bkt")
    FargateLauncher.from_config(config, "s", "s3://b/p")
    with pytest.raises(ConfigError, match="starburst build"):
        FargateLauncher.from_config(config.replace(image=None), "s", "s3://b/p")
    with pytest.raises(ConfigError, match="choose memory"):
        FargateLauncher.from_config(config.replace(cpu=4.0, memory=2048), "s", "s3://b/p")
    with pytest.raises(ConfigError, match="21 to 200"):
        FargateLauncher.from_config(config.replace(ephemeral_storage=10), "s", "s3://b/p")
    with pytest.raises(ConfigError, match="us-east-1"):
        FargateLauncher.from_config(config.replace(region="mars"), "s", "s3://b/p")


# -- task definition ------------------------------------------------------------------------

def test_default_ephemeral_storage_is_not_asked_for() -> None:
    # 20 GiB come with every task; asking for 21 would bill one GiB more.
    config = fargate_config("c", "bkt")
    assert config.ephemeral_storage == 20
    spec = taskdef.task_definition_spec(config, "img:1", REGION, "e", "t")
    assert "ephemeralStorage" not in spec
    bigger = taskdef.task_definition_spec(config.replace(ephemeral_storage=50), "img:1", REGION,
                                          "e", "t")
    assert bigger["ephemeralStorage"] == {"sizeInGiB": 50}


def test_task_definition_is_registered_once_and_reused(
        fargate: FargateEmulator, cluster: str, bucket: str, store: S3Store) -> None:
    fargate.runner = sleeper()
    config = fargate_config(cluster, bucket, architecture="arm64", ephemeral_storage=30)
    first = FargateLauncher.from_config(config, "s1", store.url)
    second = FargateLauncher.from_config(config, "s2", store.url)
    try:
        (h1,) = first.launch([_idle_spec(store, 0.2)])
        (h2,) = second.launch([_idle_spec(store, 0.2)])
        assert isinstance(h1, TaskHandle) and isinstance(h2, TaskHandle)
        assert fargate.proxy.requests[("ecs", "RegisterTaskDefinition")] == 1
        assert second.stats.requests.get("RegisterTaskDefinition") is None
        ecs = boto("ecs", fargate.moto)
        task = ecs.describe_tasks(cluster=cluster, tasks=[h1.task_id], include=["TAGS"])["tasks"][0]
        definition = ecs.describe_task_definition(
            taskDefinition=task["taskDefinitionArn"], include=["TAGS"])
        td = definition["taskDefinition"]
        assert td["family"].startswith("starburst-")
        assert td["runtimePlatform"]["cpuArchitecture"] == "ARM64"
        assert td["ephemeralStorage"] == {"sizeInGiB": 30}
        assert (td["cpu"], td["memory"]) == ("256", "512")
        assert td["executionRoleArn"] == "arn:aws:iam::123456789012:role/starburstECSExecutionRole"
        container = td["containerDefinitions"][0]
        assert container["command"] == ["python", "-m", "starburst_executor.worker"]
        assert container["logConfiguration"]["logDriver"] == "awslogs"
        assert container["logConfiguration"]["options"]["awslogs-group"] == "/starburst/workers"
        assert {"key": "starburst:managed", "value": "true"} in definition["tags"]
        tags = {t["key"]: t["value"] for t in task["tags"]}
        assert tags == {"starburst:managed": "true", "starburst:session": "s1"}
        env = {e["name"]: e["value"]
               for e in task["overrides"]["containerOverrides"][0]["environment"]}
        assert env[_keys.ENV_STORE_URL] == store.url
        # The session's MAC key is the one secret a worker gets (never AWS credentials).
        assert not any(("SECRET" in k and k != _auth.ENV_SECRET) or "AWS_" in k for k in env)
        other = FargateLauncher.from_config(config.replace(memory=1024), "s3", store.url)
        try:
            other.launch([_idle_spec(store, 0.2)])
            assert fargate.proxy.requests[("ecs", "RegisterTaskDefinition")] == 2
        finally:
            other.close()
    finally:
        first.close()
        second.close()


def test_prepare_looks_up_ahead_of_the_first_launch(
        fargate: FargateEmulator, launcher: FargateLauncher, store: S3Store) -> None:
    fargate.runner = sleeper()
    launcher.prepare()
    launcher.prepare()  # once is enough: a second call does nothing
    wait_for(lambda: fargate.proxy.requests.get(("ecs", "DescribeTaskDefinition")))  # no launch yet
    (handle,) = launcher.launch([_idle_spec(store, 0.2)])
    assert isinstance(handle, TaskHandle)
    counts = fargate.proxy.requests
    for operation in (("ecs", "DescribeTaskDefinition"), ("ec2", "DescribeVpcs"),
                      ("ec2", "DescribeSecurityGroups")):
        assert counts[operation] == 1, operation  # looked up once, not again by the launch
    assert counts.get(("ecs", "RegisterTaskDefinition"), 0) <= 1


def _in_a_vpc_without_a_group(fargate: FargateEmulator, cluster: str, bucket: str,
                              store: S3Store, cidr: str) -> tuple[FargateLauncher, str]:
    """A launcher given only a subnet of a new VPC, whose one group is the default: refused."""
    ec2 = boto("ec2", fargate.moto)
    vpc = ec2.create_vpc(CidrBlock=f"{cidr}.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{cidr}.1.0/24")["Subnet"]["SubnetId"]
    config = fargate_config(cluster, bucket, subnets=subnet)
    return FargateLauncher.from_config(config, "nd", store.url), vpc


def test_a_failed_early_lookup_is_reported_by_the_first_launch(
        fargate: FargateEmulator, cluster: str, bucket: str, store: S3Store) -> None:
    launcher, _ = _in_a_vpc_without_a_group(fargate, cluster, bucket, store, "10.8")
    try:
        launcher.prepare()
        wait_for(lambda: fargate.proxy.requests.get(("ec2", "DescribeSecurityGroups")))
        (first,) = launcher.launch([_idle_spec(store, 0.2)])
        looked = fargate.proxy.requests[("ec2", "DescribeSecurityGroups")]
        (second,) = launcher.launch([_idle_spec(store, 0.2)])
    finally:
        launcher.close()
    assert isinstance(first, LaunchFailure) and not first.retryable
    assert "default group is never used" in first.reason
    assert looked == 1  # the first launch reported the early lookup's error, not its own
    # Reported once; the next launch looks again (the user may have fixed it meanwhile).
    assert isinstance(second, LaunchFailure) and second.reason == first.reason
    assert fargate.proxy.requests[("ec2", "DescribeSecurityGroups")] > looked
    assert not fargate.proxy.requests.get(("ecs", "RunTask"))


def _one_task(config: Config, store: S3Store) -> TaskHandle:
    """Launch one idle worker with a launcher of ``config`` (closed after)."""
    launcher = FargateLauncher.from_config(config, "n", store.url)
    try:
        (handle,) = launcher.launch([_idle_spec(store, 0.2)])
        assert isinstance(handle, TaskHandle)
        return handle
    finally:
        launcher.close()


def test_networking_from_the_default_vpc_or_config(
        fargate: FargateEmulator, cluster: str, bucket: str, store: S3Store) -> None:
    fargate.runner = sleeper()
    ec2 = boto("ec2", fargate.moto)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    setup_sg = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
        {"Name": "group-name", "Values": ["starburst-workers"]}])["SecurityGroups"][0]["GroupId"]
    handle = _one_task(fargate_config(cluster, bucket), store)
    # The default VPC, its subnets, the group in it: no round trip for what is known already.
    assert {op: n for (service, op), n in fargate.proxy.requests.items()
            if service == "ec2"} == {"DescribeVpcs": 1, "DescribeSubnets": 1,
                                     "DescribeSecurityGroups": 1}
    ecs = boto("ecs", fargate.moto)
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
        "Subnets"][0]["SubnetId"]
    # Subnets configured, no group: setup's group in the subnets' VPC.
    h1 = _one_task(fargate_config(cluster, bucket, subnets=subnet), store)
    h2 = _one_task(fargate_config(cluster, bucket, subnets=subnet, security_groups="sg-12345",
                                  assign_public_ip=False), store)
    from moto.ecs.models import ecs_backends

    tasks = ecs_backends["123456789012"][REGION].tasks[cluster]
    first = tasks[handle.task_id].network_configuration["awsvpcConfiguration"]
    assert first["securityGroups"] == [setup_sg] and first["assignPublicIp"] == "ENABLED"
    assert tasks[h1.task_id].network_configuration["awsvpcConfiguration"]["securityGroups"] == [
        setup_sg]
    second = tasks[h2.task_id].network_configuration["awsvpcConfiguration"]
    assert second == {"subnets": [subnet], "securityGroups": ["sg-12345"],
                      "assignPublicIp": "DISABLED"}
    assert ecs  # the same server answered both


def test_spot_uses_the_fargate_spot_capacity_provider(
        fargate: FargateEmulator, cluster: str, bucket: str, store: S3Store) -> None:
    fargate.runner = sleeper()
    launcher = FargateLauncher.from_config(fargate_config(cluster, bucket, spot=True), "sp",
                                           store.url)
    try:
        (handle,) = launcher.launch([_idle_spec(store, 0.2)])
        assert isinstance(handle, TaskHandle)
        task = boto("ecs", fargate.moto).describe_tasks(cluster=cluster, tasks=[handle.task_id])
        assert task["tasks"][0]["capacityProviderName"] == "FARGATE_SPOT"
    finally:
        launcher.close()
    assert fargate.tasks[-1].spot


# -- RunTask ----------------------------------------------------------------------------------

def test_capacity_failures_are_retryable(fargate: FargateEmulator, launcher: FargateLauncher,
                                         store: S3Store) -> None:
    fargate.runner = sleeper()
    fargate.fail_run_task("RESOURCE:FARGATE", times=1)
    fargate.fail_run_task("ATTRIBUTE", times=1, detail="requires attribute x")
    (first,) = launcher.launch([_idle_spec(store, 0.2)])
    assert isinstance(first, LaunchFailure) and first.retryable
    assert "RESOURCE:FARGATE" in first.reason
    (second,) = launcher.launch([_idle_spec(store, 0.2)])
    assert isinstance(second, LaunchFailure) and not second.retryable
    assert "ATTRIBUTE" in second.reason and "starburst doctor" in second.reason
    (third,) = launcher.launch([_idle_spec(store, 0.2)])
    assert isinstance(third, TaskHandle)
    assert launcher.stats.tasks_started == 1


def test_missing_cluster_is_a_clear_failure(fargate: FargateEmulator, bucket: str,
                                            store: S3Store) -> None:
    launcher = FargateLauncher.from_config(fargate_config("no-such-cluster", bucket), "x",
                                           store.url)
    try:
        (failure,) = launcher.launch([_idle_spec(store)])
    finally:
        launcher.close()
    assert isinstance(failure, LaunchFailure) and not failure.retryable
    assert "starburst setup" in failure.reason


def test_run_task_pace_and_batching(fargate: FargateEmulator, launcher: FargateLauncher,
                                    store: S3Store) -> None:
    fargate.runner = sleeper(0.2)
    same = {_keys.ENV_STORE_URL: store.url, _keys.ENV_WORKER_ID: "shared",
            _keys.ENV_IDLE_TIMEOUT: "0.2"}
    specs = [WorkerSpec("shared", same)] * 12 + [_idle_spec(store, 0.2) for _ in range(6)]
    results = launcher.launch(specs)
    assert all(isinstance(r, TaskHandle) for r in results)
    assert len({r.task_id for r in results if isinstance(r, TaskHandle)}) == 18
    # 12 identical specs: 2 calls (10 + 2); 6 distinct: 6 calls, side by side (a burst).
    assert launcher.stats.requests["RunTask"] == 8
    _wait_stopped(launcher, [r for r in results if isinstance(r, TaskHandle)], 30)


def test_the_pace_allows_a_burst_then_the_sustained_rate() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    pace = _Pace(10.0, burst=4, clock=lambda: now[0], sleep=sleep)
    for _ in range(6):
        pace.wait()
    assert slept == [0.1, 0.1]  # four at once, then one each 0.1 s
    now[0] += 10.0  # idle: the bucket fills up again, but holds no more than four
    for _ in range(5):
        pace.wait()
    assert slept == [0.1, 0.1, 0.1]


def test_run_tasks_go_out_side_by_side(fargate: FargateEmulator, launcher: FargateLauncher,
                                       store: S3Store) -> None:
    fargate.runner = sleeper(0.2)
    lock, both = threading.Lock(), threading.Event()
    in_flight = [0]

    def hold(request: ProxyRequest) -> None:
        if request.operation == "RunTask":
            with lock:
                in_flight[0] += 1
                if in_flight[0] >= 2:
                    both.set()
            both.wait(5)  # one after the other, each RunTask would wait here in vain
            with lock:
                in_flight[0] -= 1

    fargate.proxy.add_hook(hold)
    results = launcher.launch([_idle_spec(store, 0.2) for _ in range(3)])
    assert all(isinstance(r, TaskHandle) for r in results)
    assert both.is_set()  # two RunTask calls were in flight at once
    _wait_stopped(launcher, [r for r in results if isinstance(r, TaskHandle)], 30)


# -- states ---------------------------------------------------------------------------------

def test_states_of_faulty_tasks(fargate: FargateEmulator, launcher: FargateLauncher,
                                store: S3Store) -> None:
    fargate.runner = sleeper()
    fargate.inject("oom", when_output="container up")  # the sleeper's first line
    fargate.inject("spot_interruption", when_output="container up")
    fargate.inject("cannot_pull")
    handles = [h for h in launcher.launch([_idle_spec(store) for _ in range(3)])
               if isinstance(h, TaskHandle)]
    # The three RunTask calls go out side by side: which task got which fault is not known.
    by_code = {s.stop_code: s for s in _wait_stopped(launcher, handles, 30)}
    oom, spot = by_code["EssentialContainerExited"], by_code["SpotInterruption"]
    pull = by_code["TaskFailedToStart"]
    assert oom.exit_code == 137 and oom.stop_code == "EssentialContainerExited"
    assert "OutOfMemoryError" in (oom.stopped_reason or "") and not oom.interrupted
    assert oom.started_at is not None and oom.stopped_at is not None
    assert spot.stop_code == "SpotInterruption" and spot.interrupted
    assert pull.stop_code == "TaskFailedToStart" and "CannotPullContainerError" in (
        pull.stopped_reason or "") and pull.started_at is None
    assert launcher.stats.requests["DescribeTasks"] >= 1


def test_never_started_task_stays_pending_until_stopped(
        fargate: FargateEmulator, launcher: FargateLauncher, store: S3Store) -> None:
    fargate.runner = sleeper()
    fargate.inject("never_starts")
    (handle,) = launcher.launch([_idle_spec(store)])
    assert isinstance(handle, TaskHandle)
    time.sleep(0.3)
    assert launcher.poll([handle])[0].phase is TaskPhase.PENDING
    launcher.stop([handle], "did not start within start_timeout")
    (state,) = _wait_stopped(launcher, [handle], 10)
    assert state.stop_code == "UserInitiated" and state.exit_code is None
    assert "start_timeout" in (state.stopped_reason or "")


def test_poll_asks_at_most_100_tasks_a_call(fargate: FargateEmulator, launcher: FargateLauncher,
                                            store: S3Store) -> None:
    fargate.runner = sleeper(0.2)
    asked: list[int] = []
    fargate.proxy.add_hook(
        lambda r: asked.append(len(r.json()["tasks"])) if r.operation == "DescribeTasks" else None)
    (real,) = launcher.launch([_idle_spec(store, 0.2)])
    assert isinstance(real, TaskHandle)
    fake = [TaskHandle(f"w{i}", f"{real.task_id}-{i}") for i in range(150)]
    states = launcher.poll([real] + fake)
    assert len(states) == 151 and asked == [100, 51]
    _wait_stopped(launcher, [real], 30)
    before = len(asked)
    launcher.poll([real])
    assert len(asked) == before  # a STOPPED task is final, never asked again


def test_log_tail_of_a_stopped_task(fargate: FargateEmulator, launcher: FargateLauncher,
                                    store: S3Store) -> None:
    fargate.runner = sleeper(0.2)
    (handle,) = launcher.launch([_idle_spec(store, 0.2)])
    assert isinstance(handle, TaskHandle)
    _wait_stopped(launcher, [handle], 30)
    assert launcher.log_tail(handle) == "container up"
    assert launcher.stats.requests["logs.GetLogEvents"] == 1
    assert launcher.log_tail(TaskHandle("x", "arn:aws:ecs:us-east-1:1:task/c/none")) == ""


def test_close_stops_what_it_started(fargate: FargateEmulator, launcher: FargateLauncher,
                                     store: S3Store) -> None:
    fargate.runner = sleeper()
    handles = launcher.launch([_idle_spec(store) for _ in range(3)])
    assert all(isinstance(h, TaskHandle) for h in handles)
    launcher.close()
    assert fargate.wait_stopped(10)
    assert launcher.stats.requests["StopTask"] == 3
    launcher.close()  # idempotent
    assert launcher.stats.requests["StopTask"] == 3


# -- capacity -------------------------------------------------------------------------------

def test_capacity_caps_to_the_quota_and_warns_once(
        fargate: FargateEmulator, cluster: str, bucket: str, store: S3Store,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = fargate_config(cluster, bucket, cpu=1, memory=2048)
    launcher = FargateLauncher.from_config(config, "q", store.url, vcpu_quota_fallback=4)
    try:
        with pytest.warns(UserWarning, match="L-3032A538") as record:
            assert launcher.capacity(10) == 4
        assert "request-service-quota-increase" in str(record[0].message)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert launcher.capacity(10) == 4
            assert launcher.capacity(2) == 2
    finally:
        launcher.close()
    monkeypatch.setenv("STARBURST_FARGATE_VCPU_QUOTA", "100")
    roomy = FargateLauncher.from_config(config, "q", store.url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert roomy.capacity(10) == 10
    finally:
        roomy.close()


def test_capacity_counts_vcpus_in_use(fargate: FargateEmulator, cluster: str, bucket: str,
                                      store: S3Store) -> None:
    fargate.runner = sleeper()
    config = fargate_config(cluster, bucket, cpu=1, memory=2048)
    busy = FargateLauncher.from_config(config, "busy", store.url)
    launcher = FargateLauncher.from_config(config, "q", store.url, vcpu_quota_fallback=5)
    try:
        handles = busy.launch([_idle_spec(store) for _ in range(2)])
        assert all(isinstance(h, TaskHandle) for h in handles)
        with pytest.warns(UserWarning, match="2 are in use"):
            assert launcher.capacity(8) == 3
    finally:
        busy.close()
        launcher.close()


def test_throttled_describe_tasks_keeps_the_last_states(
        fargate: FargateEmulator, cluster: str, bucket: str, store: S3Store) -> None:
    from starburst_executor.testing.aws_proxy import ProxyResponse

    fargate.runner = sleeper()
    launcher = FargateLauncher.from_config(fargate_config(cluster, bucket), "t", store.url,
                                           max_attempts=2)
    (handle,) = launcher.launch([_idle_spec(store)])
    assert isinstance(handle, TaskHandle)
    deadline = time.monotonic() + 20
    while launcher.poll([handle])[0].phase is not TaskPhase.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    body = b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'
    fargate.proxy.add_hook(lambda r: ProxyResponse(400, body, {
        "Content-Type": "application/x-amz-json-1.1"}) if r.operation == "DescribeTasks" else None)
    started = time.monotonic()
    (state,) = launcher.poll([handle])
    assert state.phase is TaskPhase.RUNNING
    assert fargate.proxy.injected[("ecs", "DescribeTasks")] == 2  # retried with backoff first
    assert time.monotonic() - started < 30
    launcher.close()


def test_the_vpc_default_security_group_is_never_used(
        fargate: FargateEmulator, cluster: str, bucket: str, store: S3Store) -> None:
    launcher, vpc = _in_a_vpc_without_a_group(fargate, cluster, bucket, store, "10.9")
    try:
        (failure,) = launcher.launch([_idle_spec(store, 0.2)])
    finally:
        launcher.close()
    assert isinstance(failure, LaunchFailure) and not failure.retryable
    assert "starburst setup" in failure.reason and vpc in failure.reason
    assert "default group is never used" in failure.reason
    assert not fargate.tasks or all(t.stopped for t in fargate.tasks)


def test_a_missing_log_group_does_not_keep_a_task_from_starting(
        fargate: FargateEmulator, cluster: str, bucket: str, store: S3Store) -> None:
    fargate.runner = sleeper()
    group = unique("/starburst/gone")
    spec = taskdef.task_definition_spec(fargate_config(cluster, bucket, log_group=group),
                                        "img", REGION, "arn:x", "arn:y")
    assert spec["containerDefinitions"][0]["logConfiguration"]["options"][
        "awslogs-create-group"] == "true"
    launcher = FargateLauncher.from_config(fargate_config(cluster, bucket, log_group=group),
                                           "lg", store.url)
    try:
        (handle,) = launcher.launch([_idle_spec(store, 30)])
        assert isinstance(handle, TaskHandle)
        deadline = time.monotonic() + 20
        # The emulator adopts the task, checks its log group, then starts its container.
        while not any(t.arn == handle.task_id and (t.started_at or t.stopped)
                      for t in fargate.tasks):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (task,) = [t for t in fargate.tasks if t.arn == handle.task_id]
        assert task.started_at and not task.stopped, task.stopped_reason
    finally:
        launcher.close()
    groups = boto("logs", fargate.moto).describe_log_groups(logGroupNamePrefix=group)
    assert [g["logGroupName"] for g in groups["logGroups"]] == [group]
