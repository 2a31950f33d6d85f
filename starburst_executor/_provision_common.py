"""What setup, doctor, status, cleanup and teardown share: clients, names, policy documents."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from . import _tags
from .errors import ConfigError

__all__ = [
    "Clients",
    "Log",
    "Names",
    "AWS_MANAGED_EXECUTION_POLICIES",
    "TASK_ROLE_POLICY_NAME",
    "BUCKET_POLICY_SID",
    "LIFECYCLE_RULE_ID",
    "trust_policy",
    "task_role_policy",
    "bucket_policy_statement",
    "session_lifecycle_rule",
    "ecr_lifecycle_policy",
    "normalize_policy",
    "role_name",
    "error_code",
]

Log = Callable[[str], None]
"""Where long operations report each step (the CLI prints; library callers may pass a logger)."""

AWS_MANAGED_EXECUTION_POLICIES = (
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)
TASK_ROLE_POLICY_NAME = "starburst-s3-session-data"
BUCKET_POLICY_SID = "StarburstDenyInsecureTransport"
LIFECYCLE_RULE_ID = "starburst-expire-session-data"
ECS_TASKS_PRINCIPAL = "ecs-tasks.amazonaws.com"


class Clients:
    """boto3 clients of one region, made on first use from one ``boto3.Session``.

    Passing a session lets callers (and tests) register botocore event hooks on every call.
    ``AWS_ENDPOINT_URL`` is honoured by boto3 itself.
    """

    def __init__(self, region: str | None = None, *, session: Any = None,
                 profile: str | None = None) -> None:
        import boto3

        self.session = session or boto3.session.Session(profile_name=profile)
        self.region: str | None = region or self.session.region_name
        self._clients: dict[str, Any] = {}
        self._account: str | None = None

    def require_region(self) -> str:
        if not self.region:
            raise ConfigError(
                "no AWS region: pass --region, set AWS_REGION or STARBURST_REGION, "
                "or run `aws configure`"
            )
        return self.region

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            config = Config(
                retries={"mode": "standard", "max_attempts": 5},
                connect_timeout=10,
                read_timeout=60,
                user_agent_extra="starburst-executor",
            )
            self._clients[service] = self.session.client(  # type: ignore[call-overload]
                service, region_name=self.require_region(), config=config
            )
        return self._clients[service]

    def account_id(self) -> str:
        if self._account is None:
            self._account = str(self("sts").get_caller_identity()["Account"])
        return self._account


@dataclasses.dataclass(frozen=True)
class Names:
    """The names of everything setup creates."""

    region: str
    account: str
    bucket: str
    prefix: str = "starburst"
    execution_role: str = "starburstECSExecutionRole"
    task_role: str = "starburstECSTaskRole"
    repository: str = "starburst-worker"
    cluster: str = "starburst"
    log_group: str = "/starburst/workers"
    security_group: str = "starburst-workers"

    @staticmethod
    def default_bucket(account: str, region: str) -> str:
        """``starburst-<account>-<region>``: unique across AWS, as bucket names must be."""
        return f"starburst-{account}-{region}"

    def role_arn(self, name: str) -> str:
        return f"arn:aws:iam::{self.account}:role/{name}"

    @property
    def repository_uri(self) -> str:
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{self.repository}"

    @property
    def sessions_prefix(self) -> str:
        """Key prefix of session data: ``<prefix>/sessions/``."""
        return f"{self.prefix.strip('/')}/sessions/" if self.prefix.strip("/") else "sessions/"


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
        from urllib.parse import unquote

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


def role_name(role: str) -> str:
    """The role name of a role name or ARN (``arn:aws:iam::1:role/path/name`` -> ``name``)."""
    return role.rsplit("/", 1)[-1] if role.startswith("arn:") else role


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def tag_list(key_name: str = "Key", value_name: str = "Value",
             session_id: str | None = None) -> list[dict[str, str]]:
    """``_tags.resource_tags()`` in the list-of-pairs shape most APIs take."""
    return [{key_name: k, value_name: v} for k, v in _tags.resource_tags(session_id).items()]


def is_managed(tags: Any) -> bool:
    """Whether a tag list or mapping (any key casing) carries ``starburst:managed=true``."""
    if isinstance(tags, Mapping):
        return tags.get(_tags.MANAGED_KEY) == _tags.MANAGED_VALUE
    for tag in tags or ():
        key = tag.get("Key", tag.get("key"))
        value = tag.get("Value", tag.get("value"))
        if key == _tags.MANAGED_KEY and value == _tags.MANAGED_VALUE:
            return True
    return False
