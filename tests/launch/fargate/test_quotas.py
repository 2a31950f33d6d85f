from __future__ import annotations

from typing import Any

import pytest

from starburst_executor.launch.fargate import quotas
from starburst_executor.testing import MotoServer

from ...aws_fixtures import aws, boto, cluster, moto_server  # noqa: F401


class FakeServiceQuotas:
    """Service Quotas as AWS answers it (moto does not know Fargate's quotas)."""

    def __init__(self, values: dict[str, float]):
        self.values = values
        self.calls: list[tuple[str, str]] = []

    def get_service_quota(self, ServiceCode: str, QuotaCode: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append((ServiceCode, QuotaCode))
        return {"Quota": {"QuotaCode": QuotaCode, "Value": self.values[QuotaCode]}}


def test_reads_the_on_demand_and_spot_quotas() -> None:
    fake = FakeServiceQuotas({"L-3032A538": 4000.0, "L-36FBB829": 6.0})
    assert quotas.fargate_vcpu_quota("us-east-1", client=fake) == 4000.0
    assert quotas.fargate_vcpu_quota("us-east-1", spot=True, client=fake) == 6.0
    assert fake.calls == [("fargate", "L-3032A538"), ("fargate", "L-36FBB829")]


def test_falls_back_when_service_quotas_cannot_answer(
        aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert quotas.fargate_vcpu_quota("us-east-1") is None
    assert quotas.fargate_vcpu_quota("us-east-1", fallback=12) == 12.0
    monkeypatch.setenv(quotas.ENV_QUOTA_FALLBACK, "32")
    assert quotas.fargate_vcpu_quota("us-east-1") == 32.0
    assert quotas.fargate_vcpu_quota("us-east-1", fallback=8) == 8.0


def test_bad_env_fallback_is_a_config_error(
        aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(quotas.ENV_QUOTA_FALLBACK, "lots")
    with pytest.raises(ValueError, match=quotas.ENV_QUOTA_FALLBACK):
        quotas.fargate_vcpu_quota("us-east-1")


def _run(server: MotoServer, cluster: str, cpu: str, count: int) -> list[str]:
    ecs, ec2 = boto("ecs", server), boto("ec2", server)
    ecs.register_task_definition(
        family=f"q{cpu}", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu=cpu,
        memory="4096", containerDefinitions=[{"name": "w", "image": "i", "memory": 4096}])
    subnet = ec2.describe_subnets()["Subnets"][0]
    answer = ecs.run_task(
        cluster=cluster, taskDefinition=f"q{cpu}", launchType="FARGATE", count=count,
        networkConfiguration={"awsvpcConfiguration": {
            "subnets": [subnet["SubnetId"]], "securityGroups": ["sg-1"]}})
    return [t["taskArn"] for t in answer["tasks"]]


def test_vcpus_in_use_counts_running_fargate_tasks(aws: MotoServer, cluster: str) -> None:
    assert quotas.vcpus_in_use(cluster, "us-east-1") == 0.0
    arns = _run(aws, cluster, "1024", 2) + _run(aws, cluster, "2048", 1)
    # moto leaves a task's cpu out of DescribeTasks: give the tasks theirs, as ECS does.
    from moto.ecs.models import ecs_backends

    for task in ecs_backends["123456789012"]["us-east-1"].tasks[cluster].values():
        task.cpu = "2048" if "q2048" in task.task_definition_arn else "1024"
    assert quotas.vcpus_in_use(cluster, "us-east-1") == 4.0
    assert quotas.vcpus_in_use(cluster, "us-east-1", spot=True) == 0.0
    boto("ecs", aws).stop_task(cluster=cluster, task=arns[0])
    assert quotas.vcpus_in_use(cluster, "us-east-1", spot=False) == 3.0


def test_missing_cluster_uses_nothing(aws: MotoServer) -> None:
    assert quotas.vcpus_in_use("no-such-cluster", "us-east-1") == 0.0


def test_increase_hint_names_command_and_console() -> None:
    hint = quotas.increase_hint("eu-west-1", spot=True, desired=64)
    assert "--quota-code L-36FBB829 --desired-value 64 --region eu-west-1" in hint
    assert "https://eu-west-1.console.aws.amazon.com/servicequotas" in hint
