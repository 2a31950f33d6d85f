"""The steps of ``starburst setup`` past the roles: bucket, image repository, cluster, log group,
VPC subnets and security group.  Each reads first and changes only what differs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .. import _tags
from .._aws import error_code
from ..config import Config
from ..errors import ConfigError
from .common import BUCKET_POLICY_SID, LIFECYCLE_RULE_ID, is_managed, tag_list, unless_missing
from .ownership import claim
from .policies import (
    bucket_policy_statement,
    ecr_lifecycle_policy,
    normalize_policy,
    session_lifecycle_rule,
)
from .steps import Context, StepResult

__all__ = ["ensure_bucket", "ensure_repository", "ensure_cluster", "ensure_log_group", "network",
           "ensure_security_group", "needs_public_ip", "kms_key_arn"]

_TAG = "Key=starburst:managed,Value=true"


# -- S3 ----------------------------------------------------------------------------------------

def ensure_bucket(ctx: Context) -> StepResult:
    s3 = ctx.clients("s3")
    bucket = ctx.names.bucket
    tls_statement = bucket_policy_statement(bucket)
    rule = session_lifecycle_rule(ctx.names.sessions_prefix, ctx.options.session_days)
    public_block = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    encryption = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                             "BucketKeyEnabled": True}]}
    documents = {
        "bucket policy": {"Version": "2012-10-17", "Statement": [tls_statement]},
        "lifecycle rule": rule,
        "public access block": public_block,
        "default encryption": encryption,
    }
    if not _bucket_exists(s3, bucket):
        if not ctx.dry_run:
            _create_bucket(ctx, documents)
        return ctx.result("bucket", f"s3://{bucket}", [], True, documents)
    changes = _claim_bucket(ctx, s3)
    changes += _update_bucket(ctx, s3, documents)
    return ctx.result("bucket", f"s3://{bucket}", changes, False, documents)


def _claim_bucket(ctx: Context, s3: Any) -> list[str]:
    bucket = ctx.names.bucket
    found = unless_missing("NoSuchTagSet", s3.get_bucket_tagging, Bucket=bucket)
    tags = found["TagSet"] if found else []
    others = [t for t in tags if t["Key"] != _tags.MANAGED_KEY]
    return claim(
        ctx, "S3 bucket", bucket, tags,
        lambda: s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": others + tag_list()}),
        tag_command=f"`aws s3api put-bucket-tagging --bucket {bucket}` with {_TAG} added to "
                    "its tags",
        rename="pass --bucket NAME to use (or create) another bucket")


def _create_bucket(ctx: Context, documents: Mapping[str, Any]) -> None:
    s3 = ctx.clients("s3")
    bucket = ctx.names.bucket
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if ctx.names.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": ctx.names.region}
    s3.create_bucket(**kwargs)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tag_list()})
    s3.put_public_access_block(Bucket=bucket,
                               PublicAccessBlockConfiguration=documents["public access block"])
    s3.put_bucket_encryption(Bucket=bucket,
                             ServerSideEncryptionConfiguration=documents["default encryption"])
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(documents["bucket policy"]))
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [documents["lifecycle rule"]]})


def _update_bucket(ctx: Context, s3: Any, documents: Mapping[str, Any]) -> list[str]:
    """Bring an existing bucket's settings up to date; return what changed."""
    bucket = ctx.names.bucket
    public_block = documents["public access block"]
    encryption = documents["default encryption"]
    tls_statement = documents["bucket policy"]["Statement"][0]
    rule = documents["lifecycle rule"]
    changes: list[str] = []
    found = unless_missing("NoSuchPublicAccessBlockConfiguration", s3.get_public_access_block,
                           Bucket=bucket)
    current_block = found["PublicAccessBlockConfiguration"] if found else {}
    if current_block != public_block:
        changes.append("block public access")
        if not ctx.dry_run:
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=public_block)
    if unless_missing("ServerSideEncryptionConfigurationNotFoundError", s3.get_bucket_encryption,
                      Bucket=bucket) is None:
        changes.append("turn on default encryption")
        if not ctx.dry_run:
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=encryption)
    found = unless_missing("NoSuchBucketPolicy", s3.get_bucket_policy, Bucket=bucket)
    policy: dict[str, Any] = (json.loads(found["Policy"]) if found
                              else {"Version": "2012-10-17", "Statement": []})
    statements = [s for s in policy.get("Statement", []) if s.get("Sid") != BUCKET_POLICY_SID]
    ours = [s for s in policy.get("Statement", []) if s.get("Sid") == BUCKET_POLICY_SID]
    if len(ours) != 1 or normalize_policy(ours[0]) != normalize_policy(tls_statement):
        changes.append("require TLS in the bucket policy")
        if not ctx.dry_run:
            policy["Statement"] = statements + [tls_statement]
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    found = unless_missing("NoSuchLifecycleConfiguration", s3.get_bucket_lifecycle_configuration,
                           Bucket=bucket)
    rules = found["Rules"] if found else []
    mine = [r for r in rules if r.get("ID") == LIFECYCLE_RULE_ID]
    if len(mine) != 1 or not _same_rule(mine[0], rule):
        changes.append(f"expire session data after {ctx.options.session_days} days")
        if not ctx.dry_run:
            others = [r for r in rules if r.get("ID") != LIFECYCLE_RULE_ID]
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": others + [rule]})
    return changes


def _same_rule(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(current.get(key) == value for key, value in wanted.items())


def _bucket_exists(s3: Any, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except Exception as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ConfigError(
                f"S3 bucket {bucket!r} exists but is not yours (or you may not read it): "
                "choose another name with --bucket"
            ) from None
        raise


# -- ECR ---------------------------------------------------------------------------------------

def ensure_repository(ctx: Context) -> tuple[str, StepResult]:
    ecr = ctx.clients("ecr")
    name = ctx.names.repository
    lifecycle = ecr_lifecycle_policy(ctx.options.keep_images)
    documents = {"lifecycle policy": lifecycle, "scan on push": True}
    found = unless_missing("RepositoryNotFoundException", ecr.describe_repositories,
                           repositoryNames=[name])
    repo = found["repositories"][0] if found else None
    if repo is None:
        uri = ctx.names.repository_uri
        if not ctx.dry_run:
            uri = ecr.create_repository(
                repositoryName=name,
                imageScanningConfiguration={"scanOnPush": True},
                imageTagMutability="MUTABLE",
                tags=tag_list(),
            )["repository"]["repositoryUri"]
            ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(lifecycle))
        return uri, ctx.result("image repository", name, [], True, documents)
    arn = repo["repositoryArn"]
    changes = claim(
        ctx, "ECR repository", name, ecr.list_tags_for_resource(resourceArn=arn).get("tags"),
        lambda: ecr.tag_resource(resourceArn=arn, tags=tag_list()),
        tag_command=f"`aws ecr tag-resource --resource-arn {arn} --tags {_TAG}`",
        rename="delete or rename that repository")
    if not repo.get("imageScanningConfiguration", {}).get("scanOnPush"):
        changes.append("scan on push")
        if not ctx.dry_run:
            ecr.put_image_scanning_configuration(
                repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
    policy = unless_missing("LifecyclePolicyNotFoundException", ecr.get_lifecycle_policy,
                            repositoryName=name)
    current = policy["lifecyclePolicyText"] if policy else None
    if current is None or normalize_policy(current) != normalize_policy(lifecycle):
        changes.append(f"keep the last {ctx.options.keep_images} images")
        if not ctx.dry_run:
            ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(lifecycle))
    return str(repo["repositoryUri"]), ctx.result("image repository", name, changes, False,
                                                  documents)


# -- ECS ---------------------------------------------------------------------------------------

_PROVIDERS = ["FARGATE", "FARGATE_SPOT"]


def ensure_cluster(ctx: Context) -> StepResult:
    ecs = ctx.clients("ecs")
    name = ctx.names.cluster
    clusters = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"]
    cluster = next((c for c in clusters if c.get("status") == "ACTIVE"), None)
    documents = {"capacity providers": _PROVIDERS}
    if cluster is None:
        if not ctx.dry_run:
            ecs.create_cluster(
                clusterName=name,
                capacityProviders=_PROVIDERS,
                defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
                tags=tag_list("key", "value"),
            )
        return ctx.result("cluster", name, [], True, documents)
    arn = cluster["clusterArn"]
    changes = claim(
        ctx, "ECS cluster", name, cluster.get("tags"),
        lambda: ecs.tag_resource(resourceArn=arn, tags=tag_list("key", "value")),
        tag_command=f"`aws ecs tag-resource --resource-arn {arn} --tags "
                    "key=starburst:managed,value=true`",
        rename="delete that cluster, or use another one with STARBURST_CLUSTER")
    providers = list(cluster.get("capacityProviders") or [])
    missing = [p for p in _PROVIDERS if p not in providers]
    changes += [f"add capacity providers {', '.join(missing)}"] if missing else []
    if missing and not ctx.dry_run:
        strategy = cluster.get("defaultCapacityProviderStrategy") or [
            {"capacityProvider": "FARGATE", "weight": 1}]
        ecs.put_cluster_capacity_providers(
            cluster=name, capacityProviders=providers + missing,
            defaultCapacityProviderStrategy=strategy)
    return ctx.result("cluster", name, changes, False, documents)


# -- CloudWatch Logs ---------------------------------------------------------------------------

def ensure_log_group(ctx: Context) -> StepResult:
    logs = ctx.clients("logs")
    name = ctx.names.log_group
    days = ctx.options.log_retention_days
    documents = {"retention days": days}
    groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    group = next((g for g in groups if g["logGroupName"] == name), None)
    if group is None:
        if not ctx.dry_run:
            logs.create_log_group(logGroupName=name, tags=dict(_tags.resource_tags()))
            logs.put_retention_policy(logGroupName=name, retentionInDays=days)
        return ctx.result("log group", name, [], True, documents)
    changes = claim(
        ctx, "log group", name, logs.list_tags_log_group(logGroupName=name).get("tags"),
        lambda: logs.tag_log_group(logGroupName=name, tags=dict(_tags.resource_tags())),
        tag_command=f"`aws logs tag-log-group --log-group-name {name} --tags "
                    "starburst:managed=true`",
        rename="delete that log group, or use another one with STARBURST_LOG_GROUP")
    if group.get("retentionInDays") != days:
        changes.append(f"keep logs {days} days")
        if not ctx.dry_run:
            logs.put_retention_policy(logGroupName=name, retentionInDays=days)
    return ctx.result("log group", name, changes, False, documents)


# -- VPC ---------------------------------------------------------------------------------------

def network(ctx: Context, existing: Config) -> tuple[str, list[str]]:
    ec2 = ctx.clients("ec2")
    subnets = list(ctx.options.subnets or ())
    vpc = ctx.options.vpc
    if subnets:
        found = ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
        vpcs = {s["VpcId"] for s in found}
        if len(vpcs) != 1 or (vpc and vpc not in vpcs):
            raise ConfigError(f"subnets {', '.join(subnets)} must all be in one VPC"
                              + (f" ({vpc})" if vpc else ""))
        return vpcs.pop(), subnets
    if existing.subnets and vpc is None:
        # The subnets of an earlier run (maybe --subnets in another VPC): their VPC, not the
        # default one, gets the security group.  Gone subnets are chosen again below.
        known = unless_missing("InvalidSubnetID.NotFound", ec2.describe_subnets,
                               SubnetIds=list(existing.subnets))
        if known and known["Subnets"]:
            return str(known["Subnets"][0]["VpcId"]), list(existing.subnets)
    if vpc is None:
        defaults = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not defaults:
            raise ConfigError(
                f"no default VPC in {ctx.names.region}: pass --vpc VPC_ID and --subnets "
                "SUBNET_ID,... (subnets with a route to the internet, a NAT gateway, or VPC "
                "endpoints for ECR, S3 and CloudWatch Logs)")
        vpc = str(defaults[0]["VpcId"])
    found = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    chosen = [s for s in found if s.get("DefaultForAz")] or found
    if not chosen:
        raise ConfigError(f"VPC {vpc} has no subnets: pass --subnets SUBNET_ID,...")
    return vpc, sorted(s["SubnetId"] for s in chosen)


def ensure_security_group(ctx: Context, vpc: str) -> tuple[str, StepResult]:
    ec2 = ctx.clients("ec2")
    name = ctx.names.security_group
    documents = {"inbound rules": [], "outbound rules": "all traffic (to reach ECR, S3, Logs)"}
    groups = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}])[
        "SecurityGroups"]
    if not groups:
        group_id = "sg-(new)"
        if not ctx.dry_run:
            group_id = ec2.create_security_group(
                GroupName=name,
                Description="starburst-executor workers: no inbound traffic",
                VpcId=vpc,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list()}],
            )["GroupId"]
        return group_id, ctx.result("security group", f"{name} in {vpc}", [], True, documents)
    group = groups[0]
    group_id = str(group["GroupId"])
    changes = claim(
        ctx, "security group", f"{name} ({group_id})", group.get("Tags"),
        lambda: ec2.create_tags(Resources=[group_id], Tags=tag_list()),
        tag_command=f"`aws ec2 create-tags --resources {group_id} --tags {_TAG}`",
        rename="delete that group, or pass your own with STARBURST_SECURITY_GROUPS")
    inbound = group.get("IpPermissions") or []
    if inbound:
        changes.append("remove inbound rules")
        if not ctx.dry_run:
            ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=inbound)
    if not group.get("IpPermissionsEgress"):
        changes.append("allow outbound traffic")
        if not ctx.dry_run:
            ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=[
                {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    return group_id, ctx.result("security group", f"{name} ({group_id}) in {vpc}", changes,
                                False, documents)


def needs_public_ip(ctx: Context, vpc: str, subnets: list[str]) -> bool:
    """Whether tasks in ``subnets`` get a public IP: not when every subnet's way out is a NAT
    gateway (a public IP would only expose them); else yes, as an internet gateway needs it."""
    ec2 = ctx.clients("ec2")
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "RouteTables"]
    main = next((t for t in tables if any(a.get("Main") for a in t.get("Associations", []))),
                None)
    for subnet in subnets:
        table = next((t for t in tables if any(a.get("SubnetId") == subnet
                                               for a in t.get("Associations", []))), main)
        if not any(r.get("NatGatewayId") and r.get("DestinationCidrBlock") == "0.0.0.0/0"
                   and r.get("State") != "blackhole" for r in (table or {}).get("Routes", [])):
            return True
    return False


def kms_key_arn(ctx: Context, key_id: str) -> str:
    """The ARN of a KMS key given by id, alias or ARN (IAM policies name keys by key ARN).

    Raises:
        ConfigError: no such key in this account and region.
    """
    try:
        return str(ctx.clients("kms").describe_key(KeyId=key_id)["KeyMetadata"]["Arn"])
    except Exception as exc:
        if error_code(exc) in ("NotFoundException", "InvalidArnException"):
            raise ConfigError(f"KMS key {key_id!r} does not exist in {ctx.names.region}: pass "
                              "--kms-key-id with a key of this account and region") from None
        raise
