"""The policy documents setup writes, and the little IAM evaluation doctor needs to read them."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from .common import BUCKET_POLICY_SID, ECS_TASKS_PRINCIPAL, LIFECYCLE_RULE_ID

__all__ = [
    "trust_policy",
    "task_role_policy",
    "execution_role_policy",
    "user_policy",
    "bucket_policy_statement",
    "session_lifecycle_rule",
    "ecr_lifecycle_policy",
    "normalize_policy",
    "statements",
    "allowed",
    "principals",
]


def trust_policy(account: str) -> dict[str, Any]:
    """Trust policy of both roles: only ECS tasks of this account may assume them (the
    ``aws:SourceAccount`` condition keeps another account's tasks from borrowing the role)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": ECS_TASKS_PRINCIPAL},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
        }],
    }


def task_role_policy(bucket: str, sessions_prefix: str, kms_key_arn: str | None = None
                     ) -> dict[str, Any]:
    """The task role's inline policy: read and write the objects of the sessions under
    ``sessions_prefix`` (``<prefix>/sessions/``) and list only there; use the KMS key, if any.

    No ``s3:DeleteObject``: workers never delete; the client deletes session data.
    """
    document: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SessionObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{sessions_prefix}*"],
            },
            {
                "Sid": "ListSessions",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [f"{sessions_prefix}*"]}},
            },
        ],
    }
    if kms_key_arn:
        document["Statement"].append(_kms_statement(kms_key_arn))
    return document


def _kms_statement(kms_key_arn: str) -> dict[str, Any]:
    return {"Sid": "SessionKey", "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [kms_key_arn]}


def execution_role_policy(account: str, log_group: str) -> dict[str, Any]:
    """The execution role's inline policy: create the workers' log group when it is missing
    (the task definition says ``awslogs-create-group``), in any region."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "CreateWorkerLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup"],
            "Resource": [f"arn:aws:logs:*:{account}:log-group:{log_group}",
                         f"arn:aws:logs:*:{account}:log-group:{log_group}:*"],
        }],
    }


def user_policy(names: Any, kms_key_arn: str | None = None) -> dict[str, Any]:
    """The least-privilege identity policy of a user who runs work once setup is done (not
    setup itself): run, watch and stop tasks of the cluster, pass the two roles to ECS, the
    session data, the workers' logs, and the image repository (push for ``starburst build``,
    pull for ``backend="docker"``).

    ``names``: a :class:`~.common.Names`.
    """
    region, account = names.region, names.account
    ecs = f"arn:aws:ecs:{region}:{account}"
    cluster = f"{ecs}:cluster/{names.cluster}"
    log_group = f"arn:aws:logs:{region}:{account}:log-group:{names.log_group}"
    statements: list[dict[str, Any]] = [
        {"Sid": "RunWorkers", "Effect": "Allow", "Action": ["ecs:RunTask"],
         "Resource": [f"{ecs}:task-definition/starburst-*"],
         "Condition": {"ArnEquals": {"ecs:cluster": cluster}}},
        {"Sid": "WatchAndStopWorkers", "Effect": "Allow",
         "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
         "Resource": [f"{ecs}:task/{names.cluster}/*"]},
        {"Sid": "TagWorkers", "Effect": "Allow", "Action": ["ecs:TagResource"],
         "Resource": [f"{ecs}:task/{names.cluster}/*", f"{ecs}:task-definition/starburst-*"]},
        {"Sid": "TaskDefinitions", "Effect": "Allow",
         "Action": ["ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition",
                    "ecs:DescribeClusters", "ecs:ListTasks", "servicequotas:GetServiceQuota"],
         "Resource": "*"},
        {"Sid": "PassWorkerRoles", "Effect": "Allow", "Action": ["iam:PassRole"],
         "Resource": [names.role_arn(names.execution_role), names.role_arn(names.task_role)],
         "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS_PRINCIPAL}}},
        {"Sid": "SessionObjects", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": [f"arn:aws:s3:::{names.bucket}/{names.sessions_prefix}*"]},
        {"Sid": "ListSessions", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{names.bucket}"],
         "Condition": {"StringLike": {"s3:prefix": [f"{names.sessions_prefix}*"]}}},
        {"Sid": "WorkerLogs", "Effect": "Allow",
         "Action": ["logs:GetLogEvents", "logs:FilterLogEvents"],
         "Resource": [log_group, f"{log_group}:*"]},
        {"Sid": "PushWorkerImage", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                    "ecr:CompleteLayerUpload", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer",
                    "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"],
         "Resource": [f"arn:aws:ecr:{region}:{account}:repository/{names.repository}"]},
        {"Sid": "RegistryLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"],
         "Resource": "*"},
    ]
    if kms_key_arn:
        statements.append(_kms_statement(kms_key_arn))
    return {"Version": "2012-10-17", "Statement": statements}


def bucket_policy_statement(bucket: str) -> dict[str, Any]:
    """The bucket policy statement that refuses every request not made over TLS."""
    return {
        "Sid": BUCKET_POLICY_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def session_lifecycle_rule(sessions_prefix: str, days: int) -> dict[str, Any]:
    """Expire session data ``days`` after it was written; drop stale multipart uploads."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Filter": {"Prefix": sessions_prefix},
        "Status": "Enabled",
        "Expiration": {"Days": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


def ecr_lifecycle_policy(keep_images: int) -> dict[str, Any]:
    """Keep the last ``keep_images`` images of the worker repository."""
    return {
        "rules": [{
            "rulePriority": 1,
            "description": f"keep the last {keep_images} worker images",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": keep_images,
            },
            "action": {"type": "expire"},
        }]
    }


def normalize_policy(document: Any) -> str:
    """A canonical text of a policy document, to compare what AWS returns with what we want."""
    if isinstance(document, str):
        text = document if document.lstrip().startswith("{") else unquote(document)
        document = json.loads(text)

    def norm(value: Any, key: str = "") -> Any:
        if isinstance(value, Mapping):
            return {k: norm(v, k) for k, v in value.items()}
        if isinstance(value, list):
            items = [norm(v, key) for v in value]
            if len(items) == 1 and key in ("Action", "Resource", "NotAction", "Service"):
                return items[0]
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
        return value

    return json.dumps(norm(document), sort_keys=True)


def statements(document: Any) -> list[Mapping[str, Any]]:
    """The statements of a policy document (a dict, JSON text, or URL-encoded JSON as IAM
    returns it)."""
    if isinstance(document, str):
        document = json.loads(unquote(document))
    found = document.get("Statement", [])
    return [found] if isinstance(found, Mapping) else list(found)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _matches(patterns: Any, value: str, *, ignore_case: bool) -> bool:
    if ignore_case:
        return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in _as_list(patterns))
    return any(fnmatch.fnmatchcase(value, p) for p in _as_list(patterns))


def allowed(statements: Sequence[Mapping[str, Any]], action: str, resource: str) -> bool:
    """Whether identity-policy ``statements`` allow ``action`` on ``resource`` (no conditions)."""
    allowed = False
    for statement in statements:
        if not _matches(statement.get("Action"), action, ignore_case=True):
            continue  # IAM action names are case-insensitive, resources are not
        if not _matches(statement.get("Resource"), resource, ignore_case=False):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


def principals(document: Any) -> set[str]:
    """The services a trust policy lets assume the role."""
    found: set[str] = set()
    for statement in statements(document or {}):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        if isinstance(principal, Mapping):
            found.update(_as_list(principal.get("Service")))
    return found
