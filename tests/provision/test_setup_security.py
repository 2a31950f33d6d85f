"""What setup grants and what it refuses to touch (issue 11): scoped task role, trust
conditions, KMS, the user's least-privilege policy, untagged resources, public IPs, names."""

from __future__ import annotations

import json
import os

import boto3
import pytest

from starburst_executor import cli
from starburst_executor.config import load_config
from starburst_executor.errors import ConfigError
from starburst_executor.provision import SetupOptions, setup
from starburst_executor.provision.network import network_checks
from starburst_executor.provision.policies import allowed, statements

from .fixtures import account_bucket

QUIET = {"log": lambda _: None}


def _inline(role: str, policy: str) -> dict:
    return boto3.client("iam").get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]


def test_the_task_role_reaches_only_the_sessions_prefix(recorded):
    clients, _ = recorded
    setup(SetupOptions(prefix="team/alice"), clients=clients, **QUIET)
    bucket = account_bucket()
    granted = statements(_inline("starburstECSTaskRole", "starburst-s3-session-data"))
    inside = f"arn:aws:s3:::{bucket}/team/alice/sessions/s1/batches/b0"
    for action in ("s3:GetObject", "s3:PutObject"):
        assert allowed(granted, action, inside)
        assert not allowed(granted, action, f"arn:aws:s3:::{bucket}/team/bob/sessions/x")
        assert not allowed(granted, action, f"arn:aws:s3:::{bucket}/other")
    assert not allowed(granted, "s3:DeleteObject", inside)
    (listing,) = [s for s in granted if s["Action"] == ["s3:ListBucket"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["team/alice/sessions/*"]}}
    assert not any("kms:Decrypt" in s["Action"] for s in granted)
    account = os.environ["MOTO_ACCOUNT_ID"]
    iam = boto3.client("iam")
    for role in ("starburstECSTaskRole", "starburstECSExecutionRole"):
        trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
        assert trust["Statement"][0]["Condition"] == {
            "StringEquals": {"aws:SourceAccount": account}}
    log_group = statements(_inline("starburstECSExecutionRole", "starburst-create-log-group"))
    assert allowed(log_group, "logs:CreateLogGroup",
                   f"arn:aws:logs:eu-west-1:{account}:log-group:/starburst/workers")


def test_a_kms_key_is_granted_to_the_task_role_and_written_to_the_config(recorded):
    clients, _ = recorded
    key = boto3.client("kms").create_key()["KeyMetadata"]
    boto3.client("kms").create_alias(AliasName="alias/starburst", TargetKeyId=key["KeyId"])
    result = setup(SetupOptions(kms_key_id="alias/starburst"), clients=clients, **QUIET)
    granted = statements(_inline("starburstECSTaskRole", "starburst-s3-session-data"))
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert allowed(granted, action, key["Arn"])
        assert allowed(statements(result.user_policy), action, key["Arn"])
    assert load_config().kms_key_id == "alias/starburst"
    with pytest.raises(ConfigError, match="KMS key 'alias/nope' does not exist"):
        setup(SetupOptions(kms_key_id="alias/nope"), clients=clients, **QUIET)


def test_dry_run_prints_the_policy_a_user_needs(aws, capsys):
    assert cli.main(["setup", "--region", "us-east-1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    marker = "# the least-privilege policy of a user who runs work once setup is done\n"
    assert marker in out
    policy = json.loads(out.split(marker, 1)[1])
    granted = statements(policy)
    account = os.environ["MOTO_ACCOUNT_ID"]
    task = f"arn:aws:ecs:us-east-1:{account}:task/starburst/0123"
    assert allowed(granted, "ecs:RunTask",
                   f"arn:aws:ecs:us-east-1:{account}:task-definition/starburst-abc:1")
    assert allowed(granted, "ecs:StopTask", task) and allowed(granted, "ecs:DescribeTasks", task)
    for role in ("starburstECSTaskRole", "starburstECSExecutionRole"):
        assert allowed(granted, "iam:PassRole", f"arn:aws:iam::{account}:role/{role}")
    assert not allowed(granted, "iam:PassRole", f"arn:aws:iam::{account}:role/Admin")
    bucket = account_bucket()
    assert allowed(granted, "s3:PutObject", f"arn:aws:s3:::{bucket}/starburst/sessions/s/x")
    assert not allowed(granted, "s3:PutObject", f"arn:aws:s3:::{bucket}/elsewhere")
    assert allowed(granted, "logs:GetLogEvents",
                   f"arn:aws:logs:us-east-1:{account}:log-group:/starburst/workers:log-stream:s")
    assert not allowed(granted, "iam:CreateRole", "*")
    assert "ecr:GetAuthorizationToken" in out


def test_an_untagged_role_stops_setup_until_adopted(recorded):
    clients, recorder = recorded
    iam = boto3.client("iam")
    foreign_trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="starburstECSTaskRole",
                    AssumeRolePolicyDocument=json.dumps(foreign_trust))
    recorder.calls.clear()
    for dry_run in (True, False):
        with pytest.raises(ConfigError) as caught:
            setup(SetupOptions(), clients=clients, dry_run=dry_run, **QUIET)
        text = str(caught.value)
        assert "IAM role starburstECSTaskRole" in text and "--adopt" in text
        assert "aws iam tag-role --role-name starburstECSTaskRole" in text
    mutating = recorder.mutating()
    assert "iam.UpdateAssumeRolePolicy" not in mutating and "iam.TagRole" not in mutating
    role = iam.get_role(RoleName="starburstECSTaskRole")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com"}  # untouched
    assert iam.list_role_policies(RoleName="starburstECSTaskRole")["PolicyNames"] == []

    result = setup(SetupOptions(adopt=True), clients=clients, **QUIET)
    (step,) = [s for s in result.steps if s.step == "task role"]
    assert step.details[0] == "adopt: tag starburst:managed=true"
    assert {"Key": "starburst:managed", "Value": "true"} in iam.list_role_tags(
        RoleName="starburstECSTaskRole")["Tags"]
    assert not setup(SetupOptions(), clients=clients, **QUIET).changed


def test_an_untagged_bucket_keeps_its_settings(recorded):
    clients, _ = recorded
    s3 = boto3.client("s3")
    bucket = account_bucket()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "x"}]})
    with pytest.raises(ConfigError, match=f"S3 bucket {bucket} exists but was not created"):
        setup(SetupOptions(), clients=clients, **QUIET)
    with pytest.raises(Exception, match="NoSuchPublicAccessBlockConfiguration"):
        s3.get_public_access_block(Bucket=bucket)
    setup(SetupOptions(adopt=True), clients=clients, **QUIET)
    tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert {"Key": "team", "Value": "x"} in tags  # kept
    assert {"Key": "starburst:managed", "Value": "true"} in tags
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
               .values())


def test_public_ip_only_without_a_nat_route(recorded):
    clients, _ = recorded
    setup(SetupOptions(), clients=clients, **QUIET)
    assert load_config().assign_public_ip  # the default VPC: an internet gateway
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.2.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    outer = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=outer, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=outer, SubnetId=public)
    eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=eip)["NatGateway"]["NatGatewayId"]
    inner = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=inner, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    ec2.associate_route_table(RouteTableId=inner, SubnetId=private)
    setup(SetupOptions(subnets=[private]), clients=clients, **QUIET)
    config = load_config()
    assert config.subnets == (private,) and not config.assign_public_ip
    group = ec2.describe_security_groups(GroupIds=list(config.security_groups))[
        "SecurityGroups"][0]
    assert group["GroupName"] == "starburst-workers" and group["VpcId"] == vpc
    again = setup(SetupOptions(), clients=clients, **QUIET)  # keeps the subnets and their VPC
    assert not again.changed, [s for s in again.steps if s.changed]
    checks = {c.name: c for c in network_checks(config, ec2)}
    assert checks[f"subnet {private}"].status == "ok"
    assert "tasks get no public IP" in checks[f"subnet {private}"].detail
    checks = {c.name: c for c in network_checks(config.replace(assign_public_ip=True), ec2)}
    assert checks[f"subnet {private}"].status == "warn"
    assert "assign_public_ip=false" in checks[f"subnet {private}"].fix


@pytest.mark.parametrize("options, words", [
    (SetupOptions(bucket="a/b"), "bucket='a'"),
    (SetupOptions(prefix="/x"), "must not begin with '/'"),
    (SetupOptions(region="useast1"), "not an AWS region name"),
])
def test_setup_refuses_bad_names_before_any_call(recorded, options, words):
    clients, recorder = recorded
    with pytest.raises(ConfigError, match=words):
        setup(options, clients=clients, **QUIET)
    assert recorder.calls == []
