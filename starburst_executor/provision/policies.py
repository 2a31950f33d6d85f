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
    "bucket_policy_statement",
    "session_lifecycle_rule",
    "ecr_lifecycle_policy",
    "normalize_policy",
    "statements",
    "allowed",
    "principals",
]


def trust_policy() -> dict[str, Any]:
    """Trust policy of both roles: only ECS tasks may assume them."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": ECS_TASKS_PRINCIPAL},
            "Action": "sts:AssumeRole",
        }],
    }


def task_role_policy(bucket: str) -> dict[str, Any]:
    """The task role's inline policy: read and write objects in the project's bucket, list it.

    No ``s3:DeleteObject``: workers never delete; the client deletes session data.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SessionObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
            {
                "Sid": "ListSessionBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
        ],
    }


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
