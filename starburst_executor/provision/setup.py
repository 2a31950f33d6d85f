"""``starburst setup``: create (or bring up to date) everything the executor needs.

Each step reads the current state first and changes only what differs, so a second run makes no
change.  With ``dry_run`` only the reads happen (Get/List/Describe/Head calls); the plan and every
policy document are reported instead.  What a step creates is tagged ``starburst:managed``, and
only resources with that tag are changed: an untagged one of the same name stops setup, which
says how to adopt it (``adopt``) or use another name (see :mod:`.ownership`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import (
    Config,
    check_bucket_name,
    check_prefix,
    check_region,
    config_path,
    load_config,
    read_config_file,
    update_config_file,
)
from ..errors import ConfigError
from . import resources
from .common import (
    AWS_MANAGED_EXECUTION_POLICIES,
    EXECUTION_ROLE_POLICY_NAME,
    TASK_ROLE_POLICY_NAME,
    Clients,
    Log,
    Names,
    tag_list,
    unless_missing,
)
from .ownership import claim
from .policies import (
    execution_role_policy,
    normalize_policy,
    task_role_policy,
    trust_policy,
    user_policy,
)
from .steps import UNCHANGED, Context, StepResult

__all__ = ["SetupOptions", "StepResult", "SetupResult", "setup"]


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
        kms_key_id: the KMS key of the session data (default: the config file's): the task role
            may use it.
        adopt: take over existing resources of setup's names that lack its tag (tag them, then
            bring them up to date) instead of stopping.
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
    kms_key_id: str | None = None
    adopt: bool = False
    config_file: Path | None = None


@dataclasses.dataclass(frozen=True)
class SetupResult:
    """Every step of a setup run, and the settings written (or to be written)."""

    steps: tuple[StepResult, ...]
    settings: Mapping[str, Any]
    config_file: Path
    dry_run: bool
    user_policy: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The least-privilege policy a user needs to run work once setup is done."""

    @property
    def changed(self) -> bool:
        return any(step.changed for step in self.steps)


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
    _check_names(options)
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
    ctx = Context(clients, names, options, dry_run, log)
    log(("Plan (dry run: nothing will be changed)" if dry_run else "Setting up")
        + f" in account {account}, region {region}:")
    steps, settings = _steps(ctx, existing)
    # ``image`` is a full reference whose tag (a hash of the environment) is known only after
    # ``starburst build``, which writes it; setup only creates the repository.
    steps.append(_write_config(ctx, path, settings))
    result = SetupResult(tuple(steps), settings, path, dry_run,
                         user_policy(names, ctx.kms_key_arn))
    if dry_run:
        log("Dry run: no change was made." + (
            "" if result.changed else " Everything is already set up."))
    elif result.changed:
        log(f"Done. FargateExecutor() now reads its settings from {path}.")
    else:
        log("Nothing to change: everything is already set up.")
    return result


def _steps(ctx: Context, existing: Config) -> tuple[list[StepResult], dict[str, Any]]:
    """Bring every resource up to date; return the steps and the settings to write."""
    names = ctx.names
    steps: list[StepResult] = []
    kms_key_id = ctx.options.kms_key_id or existing.kms_key_id
    ctx.kms_key_arn = resources.kms_key_arn(ctx, kms_key_id) if kms_key_id else None
    execution_role_arn, step = _ensure_role(
        ctx, "execution role", names.execution_role, managed=AWS_MANAGED_EXECUTION_POLICIES,
        inline={EXECUTION_ROLE_POLICY_NAME: execution_role_policy(names.account,
                                                                  names.log_group)})
    steps.append(step)
    task_role_arn, step = _ensure_role(
        ctx, "task role", names.task_role,
        inline={TASK_ROLE_POLICY_NAME: task_role_policy(names.bucket, names.sessions_prefix,
                                                        ctx.kms_key_arn)})
    steps.append(step)
    steps.append(resources.ensure_bucket(ctx))
    _, step = resources.ensure_repository(ctx)
    steps.append(step)
    steps.append(resources.ensure_cluster(ctx))
    steps.append(resources.ensure_log_group(ctx))
    vpc, subnets = resources.network(ctx, existing)
    group_id, step = resources.ensure_security_group(ctx, vpc)
    steps.append(step)
    public_ip = resources.needs_public_ip(ctx, vpc, subnets)
    settings: dict[str, Any] = {
        "region": names.region,
        "bucket": names.bucket,
        "prefix": names.prefix,
        "cluster": names.cluster,
        "subnets": list(subnets),
        "security_groups": [group_id],
        "assign_public_ip": public_ip,
        "execution_role": execution_role_arn,
        "task_role": task_role_arn,
        "log_group": names.log_group,
    }
    if kms_key_id:
        settings["kms_key_id"] = kms_key_id
    return steps, settings


def _check_names(options: SetupOptions) -> None:
    """Refuse a malformed bucket, prefix or region before any AWS call."""
    if options.bucket is not None:
        check_bucket_name(options.bucket)
    if options.prefix is not None:
        check_prefix(options.prefix)
    if options.region is not None:
        check_region(options.region)


def _existing_config(path: Path) -> Config:
    try:
        return load_config(path=path)
    except ConfigError:
        return Config()


# -- IAM roles ---------------------------------------------------------------------------------

def _ensure_role(
    ctx: Context,
    step: str,
    name: str,
    *,
    managed: Sequence[str] = (),
    inline: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[str, StepResult]:
    iam = ctx.clients("iam")
    trust = trust_policy(ctx.names.account)
    documents: dict[str, Any] = {"trust policy": trust}
    if managed:
        documents["attached policies"] = list(managed)
    documents.update({f"inline policy {k}": v for k, v in (inline or {}).items()})
    found = unless_missing("NoSuchEntity", iam.get_role, RoleName=name)
    role = found["Role"] if found else None
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
    tags = role.get("Tags") or iam.list_role_tags(RoleName=name).get("Tags")
    changes.extend(claim(
        ctx, "IAM role", name, tags,
        lambda: iam.tag_role(RoleName=name, Tags=tag_list()),
        tag_command=f"`aws iam tag-role --role-name {name} --tags Key=starburst:managed,"
                    "Value=true`",
        rename="delete or rename that role"))
    if normalize_policy(role["AssumeRolePolicyDocument"]) != normalize_policy(trust):
        changes.append("reset trust policy to ECS tasks of this account")
        if not ctx.dry_run:
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    attached = {p["PolicyArn"] for p in _attached_policies(iam, name)}
    for policy_arn in managed:
        if policy_arn not in attached:
            changes.append(f"attach {policy_arn.rsplit('/', 1)[-1]}")
            if not ctx.dry_run:
                iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
    for policy_name, document in (inline or {}).items():
        found = unless_missing("NoSuchEntity", iam.get_role_policy, RoleName=name,
                               PolicyName=policy_name)
        current = found["PolicyDocument"] if found else None
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


# -- config file -------------------------------------------------------------------------------

def _write_config(ctx: Context, path: Path, settings: Mapping[str, Any]) -> StepResult:
    current = read_config_file(path) or {}
    changes = sorted(k for k in settings if current.get(k) != settings[k])
    created = not path.exists()
    if (created or changes) and not ctx.dry_run:
        update_config_file(settings, path)
    detail = [f"set {', '.join(changes)}"] if changes and not created else []
    return ctx.result("config file", str(path), detail, created, {"settings": dict(settings)})
