"""``starburst setup`` against a moto server: idempotent, dry run makes no mutating call."""

from __future__ import annotations

import json

import boto3

from starburst_executor.config import load_config
from starburst_executor.provision import SetupOptions, setup

from .fixtures import account_bucket


def test_setup_creates_everything_then_changes_nothing(recorded, tmp_path):
    clients, recorder = recorded
    lines: list[str] = []
    first = setup(SetupOptions(), clients=clients, log=lines.append)
    assert first.changed
    assert all(step.action == "created" for step in first.steps), first.steps
    recorder.calls.clear()
    again: list[str] = []
    second = setup(SetupOptions(), clients=clients, log=again.append)
    assert not second.changed, [s for s in second.steps if s.changed]
    assert recorder.mutating() == []
    assert again[-1] == "Nothing to change: everything is already set up."
    assert all("[unchanged]" in line for line in again[1:-1])

    config = load_config()
    assert config.bucket == account_bucket()
    assert config.region == "us-east-1" and config.cluster == "starburst"
    assert config.subnets and config.security_groups
    assert config.execution_role.endswith(":role/starburstECSExecutionRole")
    assert config.image is None  # written by `starburst build`, which knows the tag


def test_setup_resources_are_private_tagged_and_least_privilege(recorded):
    clients, _ = recorded
    setup(SetupOptions(session_days=3, keep_images=5), clients=clients, log=lambda _: None)
    bucket = account_bucket()
    s3 = boto3.client("s3")
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rule = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]
    assert rule["Expiration"]["Days"] == 3 and rule["Filter"]["Prefix"] == "starburst/sessions/"
    assert {"Key": "starburst:managed", "Value": "true"} in s3.get_bucket_tagging(Bucket=bucket)[
        "TagSet"]
    iam = boto3.client("iam")
    inline = iam.get_role_policy(RoleName="starburstECSTaskRole",
                                 PolicyName="starburst-s3-session-data")["PolicyDocument"]
    actions = sorted(a for s in inline["Statement"] for a in s["Action"])
    assert actions == ["s3:GetObject", "s3:ListBucket", "s3:PutObject"]
    attached = iam.list_attached_role_policies(RoleName="starburstECSExecutionRole")
    assert {p["PolicyName"] for p in attached["AttachedPolicies"]} == {
        "AmazonECSTaskExecutionRolePolicy", "AmazonEC2ContainerRegistryReadOnly"}
    cluster = boto3.client("ecs").describe_clusters(clusters=["starburst"], include=["TAGS"])[
        "clusters"][0]
    assert cluster["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    lifecycle = json.loads(boto3.client("ecr").get_lifecycle_policy(
        repositoryName="starburst-worker")["lifecyclePolicyText"])
    assert lifecycle["rules"][0]["selection"]["countNumber"] == 5
    group = boto3.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["starburst-workers"]}])["SecurityGroups"][0]
    assert group["IpPermissions"] == []

    managed = {"Key": "starburst:managed", "Value": "true"}
    assert managed in group["Tags"]
    assert {"key": "starburst:managed", "value": "true"} in cluster["tags"]
    for role in ("starburstECSExecutionRole", "starburstECSTaskRole"):
        assert managed in iam.list_role_tags(RoleName=role)["Tags"]
    ecr = boto3.client("ecr")
    repo = ecr.describe_repositories(repositoryNames=["starburst-worker"])["repositories"][0]
    assert repo["imageScanningConfiguration"]["scanOnPush"]
    assert {"Key": "starburst:managed", "Value": "true"} in ecr.list_tags_for_resource(
        resourceArn=repo["repositoryArn"])["tags"]
    logs = boto3.client("logs")
    assert logs.list_tags_log_group(logGroupName="/starburst/workers")["tags"] == {
        "starburst:managed": "true"}
    assert logs.describe_log_groups(logGroupNamePrefix="/starburst/workers")["logGroups"][0][
        "retentionInDays"] == 30


def test_dry_run_makes_no_mutating_call_and_shows_the_policies(recorded, tmp_path):
    clients, recorder = recorded
    lines: list[str] = []
    result = setup(SetupOptions(), clients=clients, dry_run=True, log=lines.append)
    assert recorder.calls, "the dry run reads the current state"
    assert recorder.mutating() == []
    assert all(step.action == "would create" for step in result.steps)
    assert not (tmp_path / "starburst.json").exists()
    assert boto3.client("iam").list_roles()["Roles"] == []


def test_setup_repairs_drift(recorded):
    clients, _ = recorded
    setup(SetupOptions(), clients=clients, log=lambda _: None)
    iam = boto3.client("iam")
    iam.delete_role_policy(RoleName="starburstECSTaskRole", PolicyName="starburst-s3-session-data")
    dry = setup(SetupOptions(), clients=clients, dry_run=True, log=lambda _: None)
    assert [s.step for s in dry.steps if s.changed] == ["task role"]
    fixed = setup(SetupOptions(), clients=clients, log=lambda _: None)
    assert [s.action for s in fixed.steps if s.changed] == ["updated"]
    iam.get_role_policy(RoleName="starburstECSTaskRole", PolicyName="starburst-s3-session-data")
