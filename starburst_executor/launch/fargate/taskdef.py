"""What every RunTask of a Fargate launcher names: its task definition and its network.

::

    task definition: RegisterTaskDefinition arguments from the config and image
                     -> family "starburst-<content hash>" -> DescribeTaskDefinition (ACTIVE: reuse)
                     -> else RegisterTaskDefinition (tagged)
    network:         config.subnets / security_groups, else the default VPC's default subnets
                     and the security group setup made there ("starburst-workers"); never the
                     VPC's "default" group (it lets every member of the group in)

Both are looked up once per launcher, at its first launch; every botocore error goes through
:func:`starburst_executor._aws.translate`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from ... import _aws, _tags
from ...config import Config
from ...errors import ConfigError, StarburstError
from ..base import WORKER_COMMAND
from . import sizes

__all__ = [
    "CONTAINER_NAME",
    "LOG_STREAM_PREFIX",
    "task_definition_spec",
    "family_for",
    "ensure_task_definition",
    "resolve_network",
]

CONTAINER_NAME = "worker"
LOG_STREAM_PREFIX = "starburst"
"""awslogs stream prefix: a task's stream is ``starburst/worker/<task id>``."""

Clients = Callable[[str], Any]
"""service name -> boto3 client (the launcher's, which counts the requests)."""


def task_definition_spec(config: Config, image: str, region: str, execution_role_arn: str,
                         task_role_arn: str) -> dict[str, Any]:
    """The RegisterTaskDefinition arguments (family excepted) for ``config`` and ``image``."""
    cpu_units, memory = sizes.validate_size(config.cpu, config.memory)
    architecture = "ARM64" if config.architecture == "arm64" else "X86_64"
    spec: dict[str, Any] = {
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": str(cpu_units),
        "memory": str(memory),
        "runtimePlatform": {"cpuArchitecture": architecture, "operatingSystemFamily": "LINUX"},
        "executionRoleArn": execution_role_arn,
        "taskRoleArn": task_role_arn,
        "containerDefinitions": [
            {
                "name": CONTAINER_NAME,
                "image": image,
                "essential": True,
                "command": list(WORKER_COMMAND),
                "memory": memory,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": config.log_group,
                        "awslogs-region": region,
                        "awslogs-stream-prefix": LOG_STREAM_PREFIX,
                        # A missing group (deleted, another region) never keeps a task from
                        # starting: the execution role may create it (setup grants that).
                        "awslogs-create-group": "true",
                    },
                },
            }
        ],
    }
    if config.ephemeral_storage > sizes.EPHEMERAL_DEFAULT:
        # Only storage above the default is asked for (and billed).
        spec["ephemeralStorage"] = {"sizeInGiB": config.ephemeral_storage}
    return spec


def family_for(spec: dict[str, Any]) -> str:
    """``starburst-<hash>``: one family per content hash of the task definition."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return f"starburst-{digest[:20]}"


def _role_arn(name: str, identity: dict[str, str]) -> str:
    if name.startswith("arn:"):
        return name
    partition = identity["Arn"].split(":")[1]
    return f"arn:{partition}:iam::{identity['Account']}:role/{name}"


def _ecs_error(exc: BaseException, operation: str, family: str) -> StarburstError:
    return _aws.translate(exc, service="ecs", operation=operation,
                          resource=f"task definition {family}")


def ensure_task_definition(config: Config, image: str, region: str, clients: Clients) -> str:
    """The ARN of the ACTIVE task definition for ``config`` and ``image``, registered if new.

    Raises:
        StarburstError: translated from the AWS error (no permission, no such role...).
    """
    roles = (config.execution_role, config.task_role)
    identity: dict[str, str] = {}
    if not all(r.startswith("arn:") for r in roles):
        try:
            identity = clients("sts").get_caller_identity()
        except Exception as exc:
            raise _aws.translate(exc, service="sts", operation="GetCallerIdentity") from None
    spec = task_definition_spec(config, image, region, *(_role_arn(r, identity) for r in roles))
    family = family_for(spec)
    ecs = clients("ecs")
    try:
        found = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        if found.get("status") == "ACTIVE":
            return str(found["taskDefinitionArn"])
    except Exception as exc:
        if _aws.error_code(exc) not in ("ClientException", "InvalidParameterException"):
            raise _ecs_error(exc, "DescribeTaskDefinition", family) from None
    tags = [{"key": k, "value": v} for k, v in _tags.resource_tags().items()]
    try:
        registered = ecs.register_task_definition(family=family, tags=tags, **spec)
    except Exception as exc:
        raise _ecs_error(exc, "RegisterTaskDefinition", family) from None
    return str(registered["taskDefinition"]["taskDefinitionArn"])


def _default_subnets(region: str, ec2: Any) -> tuple[str, list[str]]:
    """The default VPC and its default subnets."""
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])
    if not vpcs.get("Vpcs"):
        raise ConfigError(
            f"no default VPC in {region}: pass subnets=... and "
            "security_groups=... (or set STARBURST_SUBNETS / STARBURST_SECURITY_GROUPS),"
            " or run `starburst setup`"
        )
    vpc_id = vpcs["Vpcs"][0]["VpcId"]
    found = ec2.describe_subnets(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "default-for-az", "Values": ["true"]},
    ])
    subnets = sorted(s["SubnetId"] for s in found.get("Subnets", []))
    if not subnets:
        raise ConfigError(
            f"the default VPC {vpc_id} in {region} has no default subnets: pass "
            "subnets=... and security_groups=..., or run `starburst setup`"
        )
    return vpc_id, subnets


SETUP_SECURITY_GROUP = "starburst-workers"
"""The security group ``starburst setup`` creates (no inbound rules)."""


def _subnet_vpc(subnet: str, ec2: Any) -> str:
    return str(ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"])


def _setup_security_group(vpc: str, ec2: Any) -> list[str]:
    found = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc]},
        {"Name": "group-name", "Values": [SETUP_SECURITY_GROUP]},
    ])
    groups = [g["GroupId"] for g in found.get("SecurityGroups", [])[:1]]
    if not groups:
        raise ConfigError(
            f"no security group is configured and VPC {vpc} has no {SETUP_SECURITY_GROUP!r} "
            "group: run `starburst setup` (it creates one with no inbound rules), or pass "
            "security_groups=... / set STARBURST_SECURITY_GROUPS (the VPC's default group is "
            "never used)")
    return groups


def resolve_network(config: Config, region: str, clients: Clients) -> dict[str, Any]:
    """RunTask's ``networkConfiguration``: the configured subnets and security groups, else the
    default VPC's default subnets and setup's security group in that VPC.

    Raises:
        ConfigError: no default VPC, subnets or security group to fall back on.
        StarburstError: translated from the AWS error.
    """
    subnets = list(config.subnets)
    groups = list(config.security_groups)
    try:
        vpc = ""
        if not subnets:
            vpc, subnets = _default_subnets(region, clients("ec2"))
        if not groups:
            # The default VPC's is known already: a round trip fewer before the first RunTask.
            groups = _setup_security_group(vpc or _subnet_vpc(subnets[0], clients("ec2")),
                                           clients("ec2"))
    except StarburstError:
        raise
    except Exception as exc:
        raise _aws.translate(exc, service="ec2", operation="DescribeSubnets",
                             resource=f"the VPCs of {region}") from None
    return {
        "awsvpcConfiguration": {
            "subnets": subnets,
            "securityGroups": groups,
            "assignPublicIp": "ENABLED" if config.assign_public_ip else "DISABLED",
        }
    }
