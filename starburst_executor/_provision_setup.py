"""``starburst setup``: create (or bring up to date) everything the executor needs.

Each step reads the current state first and changes only what differs, so a second run makes no
change.  With ``dry_run`` only the reads happen (Get/List/Describe/Head calls); the plan and every
policy document are reported instead.  Only what a step creates is tagged ``starburst:managed``;
an existing resource that was not created by setup is left untagged, so teardown never deletes it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _tags
from ._provision_common import (
    AWS_MANAGED_EXECUTION_POLICIES,
    BUCKET_POLICY_SID,
    LIFECYCLE_RULE_ID,
    TASK_ROLE_POLICY_NAME,
    Clients,
    Log,
    Names,
    bucket_policy_statement,
    ecr_lifecycle_policy,
    error_code,
    is_managed,
    normalize_policy,
    session_lifecycle_rule,
    tag_list,
    task_role_policy,
    trust_policy,
)
from .config import Config, config_path, load_config, write_config_file
from .errors import ConfigError

__all__ = ["SetupOptions", "StepResult", "SetupResult", "setup"]

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


@dataclasses.dataclass(frozen=True)
class SetupOptions:
    """What ``starburst setup`` creates; ``None`` means the config file's value or the default.

    Attributes:
        region: AWS region (default: the config file's, then boto3's).
        bucket: S3 bucket for session data (default ``starburst-<account>-<region>``).
        prefix: key prefix inside the bucket.
        session_days: session data (``<prefix>/sessions/``) expires after this many days.
        keep_images: the ECR lifecycle policy keeps this many worker images.
        log_retention_days: CloudWatch retention of worker logs (a value CloudWatch accepts).
        vpc: VPC of the security group (default: the default VPC).
        subnets: subnets for the tasks (default: the VPC's default subnets, else all of them).
        repository: ECR repository name of the worker image.
        config_file: where to write the config file (default :func:`config.config_path`).
    """

    region: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    session_days: int = 7
    keep_images: int = 10
    log_retention_days: int = 30
    vpc: str | None = None
    subnets: Sequence[str] | None = None
    repository: str = "starburst-worker"
    config_file: Path | None = None


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One step: what it is about, what happened (or would happen) and the documents it uses."""

    step: str
    resource: str
    action: str  # created / updated / unchanged, or "would create" / "would update"
    details: tuple[str, ...] = ()
    documents: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.action != UNCHANGED


@dataclasses.dataclass(frozen=True)
class SetupResult:
    """Every step of a setup run, and the settings written (or to be written)."""

    steps: tuple[StepResult, ...]
    settings: Mapping[str, Any]
    config_file: Path
    dry_run: bool

    @property
    def changed(self) -> bool:
        return any(step.changed for step in self.steps)


class _Context:
    def __init__(self, clients: Clients, names: Names, options: SetupOptions, dry_run: bool,
                 log: Log) -> None:
        self.clients = clients
        self.names = names
        self.options = options
        self.dry_run = dry_run
        self.log = log

    def result(self, step: str, resource: str, changes: list[str], created: bool,
               documents: Mapping[str, Any] | None = None) -> StepResult:
        if created:
            action = CREATED
        elif changes:
            action = UPDATED
        else:
            action = UNCHANGED
        if self.dry_run and action != UNCHANGED:
            action = "would " + action[:-1]  # "would create", "would update"
        result = StepResult(step, resource, action, tuple(changes), dict(documents or {}))
        suffix = f": {'; '.join(changes)}" if changes and not created else ""
        self.log(f"  {step:<16} {resource}  [{action}]{suffix}")
        return result


def setup(
    options: SetupOptions | None = None,
    *,
    clients: Clients | None = None,
    dry_run: bool = False,
    log: Log = print,
) -> SetupResult:
    """Create or update the roles, bucket, repository, cluster, log group, security group and
    config file that ``FargateExecutor()`` needs.  Idempotent.

    Args:
        options: what to create; see :class:`SetupOptions`.
        clients: boto3 clients (default: a new session in the chosen region).
        dry_run: make no mutating call; report the plan and the policy documents.
        log: receives one line per step.

    Returns:
        A :class:`SetupResult`; ``changed`` is false when everything was already in place.

    Raises:
        ConfigError: no region, no default VPC and no ``vpc``, a bucket owned by someone else.
        botocore.exceptions.ClientError / BotoCoreError: an AWS call failed (the CLI explains).
    """
    options = options or SetupOptions()
    path = options.config_file or config_path()
    existing = _existing_config(path)
    region = options.region or existing.region
    clients = clients or Clients(region)
    if region:
        clients.region = region
    region = clients.require_region()
    account = clients.account_id()
    if existing.region and existing.region != region:
        # The config file describes another region: its bucket and subnets are not for this one.
        existing = Config(prefix=existing.prefix, cluster=existing.cluster,
                          log_group=existing.log_group)
    prefix = options.prefix if options.prefix is not None else existing.prefix
    names = Names(
        region=region,
        account=account,
        bucket=options.bucket or existing.bucket or Names.default_bucket(account, region),
        prefix=prefix,
        repository=options.repository,
        cluster=existing.cluster,
        log_group=existing.log_group,
    )
    ctx = _Context(clients, names, options, dry_run, log)
    log(("Plan (dry run: nothing will be changed)" if dry_run else "Setting up")
        + f" in account {account}, region {region}:")
    steps: list[StepResult] = []
    execution_role_arn, step = _ensure_role(
        ctx, "execution role", names.execution_role, managed=AWS_MANAGED_EXECUTION_POLICIES)
    steps.append(step)
    task_role_arn, step = _ensure_role(
        ctx, "task role", names.task_role,
        inline={TASK_ROLE_POLICY_NAME: task_role_policy(names.bucket)})
    steps.append(step)
    steps.append(_ensure_bucket(ctx))
    _, step = _ensure_repository(ctx)
    steps.append(step)
    steps.append(_ensure_cluster(ctx))
    steps.append(_ensure_log_group(ctx))
    vpc, subnets = _network(ctx, existing)
    group_id, step = _ensure_security_group(ctx, vpc)
    steps.append(step)
    settings: dict[str, Any] = {
        "region": region,
        "bucket": names.bucket,
        "prefix": names.prefix,
        "cluster": names.cluster,
        "subnets": list(subnets),
        "security_groups": [group_id],
        "execution_role": execution_role_arn,
        "task_role": task_role_arn,
        "log_group": names.log_group,
    }
    # ``image`` is a full reference whose tag (a hash of the environment) is known only after
    # ``starburst build``, which writes it; setup only creates the repository.
    steps.append(_write_config(ctx, path, settings))
    result = SetupResult(tuple(steps), settings, path, dry_run)
    if dry_run:
        log("Dry run: no change was made." + (
            "" if result.changed else " Everything is already set up."))
    elif result.changed:
        log(f"Done. FargateExecutor() now reads its settings from {path}.")
    else:
        log("Nothing to change: everything is already set up.")
    return result


def _existing_config(path: Path) -> Config:
    try:
        return load_config(path=path)
    except ConfigError:
        return Config()


# -- IAM roles ---------------------------------------------------------------------------------

def _ensure_role(
    ctx: _Context,
    step: str,
    name: str,
    *,
    managed: Sequence[str] = (),
    inline: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[str, StepResult]:
    iam = ctx.clients("iam")
    trust = trust_policy()
    documents: dict[str, Any] = {"trust policy": trust}
    if managed:
        documents["attached policies"] = list(managed)
    documents.update({f"inline policy {k}": v for k, v in (inline or {}).items()})
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        role = None
    changes: list[str] = []
    if role is None:
        arn = ctx.names.role_arn(name)
        if not ctx.dry_run:
            arn = iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description="starburst-executor workers on ECS Fargate",
                Tags=tag_list(),
            )["Role"]["Arn"]
            for policy_arn in managed:
                iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
            for policy_name, document in (inline or {}).items():
                iam.put_role_policy(RoleName=name, PolicyName=policy_name,
                                    PolicyDocument=json.dumps(document))
        return arn, ctx.result(step, name, [], True, documents)
    arn = role["Arn"]
    if normalize_policy(role["AssumeRolePolicyDocument"]) != normalize_policy(trust):
        changes.append("reset trust policy to ecs-tasks.amazonaws.com")
        if not ctx.dry_run:
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    attached = {p["PolicyArn"] for p in _attached_policies(iam, name)}
    for policy_arn in managed:
        if policy_arn not in attached:
            changes.append(f"attach {policy_arn.rsplit('/', 1)[-1]}")
            if not ctx.dry_run:
                iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
    for policy_name, document in (inline or {}).items():
        try:
            current = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            current = None
        if current is None or normalize_policy(current) != normalize_policy(document):
            changes.append(f"{'add' if current is None else 'update'} inline policy {policy_name}")
            if not ctx.dry_run:
                iam.put_role_policy(RoleName=name, PolicyName=policy_name,
                                    PolicyDocument=json.dumps(document))
    return arn, ctx.result(step, name, changes, False, documents)


def _attached_policies(iam: Any, name: str) -> list[dict[str, Any]]:
    policies: list[dict[str, Any]] = []
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
        policies.extend(page["AttachedPolicies"])
    return policies


# -- S3 ----------------------------------------------------------------------------------------

def _ensure_bucket(ctx: _Context) -> StepResult:
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
    exists = _bucket_exists(s3, bucket)
    if not exists:
        if not ctx.dry_run:
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if ctx.names.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": ctx.names.region}
            s3.create_bucket(**kwargs)
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tag_list()})
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=public_block)
            s3.put_bucket_encryption(Bucket=bucket,
                                     ServerSideEncryptionConfiguration=encryption)
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(documents["bucket policy"]))
            s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                                  LifecycleConfiguration={"Rules": [rule]})
        return ctx.result("bucket", f"s3://{bucket}", [], True, documents)
    changes: list[str] = []
    try:
        current_block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except Exception as exc:
        if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        current_block = {}
    if current_block != public_block:
        changes.append("block public access")
        if not ctx.dry_run:
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=public_block)
    try:
        s3.get_bucket_encryption(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        changes.append("turn on default encryption")
        if not ctx.dry_run:
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=encryption)
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except Exception as exc:
        if error_code(exc) != "NoSuchBucketPolicy":
            raise
        policy = {"Version": "2012-10-17", "Statement": []}
    statements = [s for s in policy.get("Statement", []) if s.get("Sid") != BUCKET_POLICY_SID]
    ours = [s for s in policy.get("Statement", []) if s.get("Sid") == BUCKET_POLICY_SID]
    if len(ours) != 1 or normalize_policy(ours[0]) != normalize_policy(tls_statement):
        changes.append("require TLS in the bucket policy")
        if not ctx.dry_run:
            policy["Statement"] = statements + [tls_statement]
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except Exception as exc:
        if error_code(exc) != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    mine = [r for r in rules if r.get("ID") == LIFECYCLE_RULE_ID]
    if len(mine) != 1 or not _same_rule(mine[0], rule):
        changes.append(f"expire session data after {ctx.options.session_days} days")
        if not ctx.dry_run:
            others = [r for r in rules if r.get("ID") != LIFECYCLE_RULE_ID]
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": others + [rule]})
    return ctx.result("bucket", f"s3://{bucket}", changes, False, documents)


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

def _ensure_repository(ctx: _Context) -> tuple[str, StepResult]:
    ecr = ctx.clients("ecr")
    name = ctx.names.repository
    lifecycle = ecr_lifecycle_policy(ctx.options.keep_images)
    documents = {"lifecycle policy": lifecycle, "scan on push": True}
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except Exception as exc:
        if error_code(exc) != "RepositoryNotFoundException":
            raise
        repo = None
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
    changes: list[str] = []
    if not repo.get("imageScanningConfiguration", {}).get("scanOnPush"):
        changes.append("scan on push")
        if not ctx.dry_run:
            ecr.put_image_scanning_configuration(
                repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
    try:
        current = ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
    except Exception as exc:
        if error_code(exc) != "LifecyclePolicyNotFoundException":
            raise
        current = None
    if current is None or normalize_policy(current) != normalize_policy(lifecycle):
        changes.append(f"keep the last {ctx.options.keep_images} images")
        if not ctx.dry_run:
            ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(lifecycle))
    return str(repo["repositoryUri"]), ctx.result("image repository", name, changes, False,
                                                  documents)


# -- ECS ---------------------------------------------------------------------------------------

_PROVIDERS = ["FARGATE", "FARGATE_SPOT"]


def _ensure_cluster(ctx: _Context) -> StepResult:
    ecs = ctx.clients("ecs")
    name = ctx.names.cluster
    clusters = ecs.describe_clusters(clusters=[name])["clusters"]
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
    providers = list(cluster.get("capacityProviders") or [])
    missing = [p for p in _PROVIDERS if p not in providers]
    changes = [f"add capacity providers {', '.join(missing)}"] if missing else []
    if missing and not ctx.dry_run:
        strategy = cluster.get("defaultCapacityProviderStrategy") or [
            {"capacityProvider": "FARGATE", "weight": 1}]
        ecs.put_cluster_capacity_providers(
            cluster=name, capacityProviders=providers + missing,
            defaultCapacityProviderStrategy=strategy)
    return ctx.result("cluster", name, changes, False, documents)


# -- CloudWatch Logs ---------------------------------------------------------------------------

def _ensure_log_group(ctx: _Context) -> StepResult:
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
    changes = []
    if group.get("retentionInDays") != days:
        changes.append(f"keep logs {days} days")
        if not ctx.dry_run:
            logs.put_retention_policy(logGroupName=name, retentionInDays=days)
    return ctx.result("log group", name, changes, False, documents)


# -- VPC ---------------------------------------------------------------------------------------

def _network(ctx: _Context, existing: Config) -> tuple[str, list[str]]:
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
    if vpc is None:
        defaults = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not defaults:
            raise ConfigError(
                f"no default VPC in {ctx.names.region}: pass --vpc VPC_ID and --subnets "
                "SUBNET_ID,... (subnets with a route to the internet, a NAT gateway, or VPC "
                "endpoints for ECR, S3 and CloudWatch Logs)")
        vpc = str(defaults[0]["VpcId"])
    if existing.subnets and not ctx.options.vpc:
        return vpc, list(existing.subnets)
    found = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    chosen = [s for s in found if s.get("DefaultForAz")] or found
    if not chosen:
        raise ConfigError(f"VPC {vpc} has no subnets: pass --subnets SUBNET_ID,...")
    return vpc, sorted(s["SubnetId"] for s in chosen)


def _ensure_security_group(ctx: _Context, vpc: str) -> tuple[str, StepResult]:
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
    changes: list[str] = []
    inbound = group.get("IpPermissions") or []
    if inbound:
        if is_managed(group.get("Tags")):
            changes.append("remove inbound rules")
            if not ctx.dry_run:
                ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=inbound)
        else:
            ctx.log(f"  warning: security group {group_id} has inbound rules; "
                    "setup leaves a group it did not create as it is")
    if not group.get("IpPermissionsEgress"):
        changes.append("allow outbound traffic")
        if not ctx.dry_run:
            ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=[
                {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    return group_id, ctx.result("security group", f"{name} ({group_id}) in {vpc}", changes,
                                False, documents)


# -- config file -------------------------------------------------------------------------------

def _write_config(ctx: _Context, path: Path, settings: Mapping[str, Any]) -> StepResult:
    known = {f.name for f in dataclasses.fields(Config)}
    current: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                current = {k: v for k, v in data.items() if k in known}
        except (OSError, ValueError):
            current = {}
    merged = {**current, **settings}
    changes = sorted(k for k in settings if current.get(k) != settings[k])
    created = not path.exists()
    if (created or changes) and not ctx.dry_run:
        write_config_file(merged, path)
    detail = [f"set {', '.join(changes)}"] if changes and not created else []
    return ctx.result("config file", str(path), detail, created, {"settings": dict(settings)})
