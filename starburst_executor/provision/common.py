"""What setup, doctor, status, cleanup and teardown share: clients, names, tags."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from .. import _aws, _tags
from ..config import Config, sessions_prefix
from ..errors import ConfigError

__all__ = [
    "Clients",
    "Log",
    "Names",
    "AWS_MANAGED_EXECUTION_POLICIES",
    "TASK_ROLE_POLICY_NAME",
    "EXECUTION_ROLE_POLICY_NAME",
    "BUCKET_POLICY_SID",
    "LIFECYCLE_RULE_ID",
    "ECS_TASKS_PRINCIPAL",
    "role_name",
    "tag_list",
    "is_managed",
    "unless_missing",
]

Log = Callable[[str], None]
"""Where long operations report each step (the CLI prints; library callers may pass a logger)."""

AWS_MANAGED_EXECUTION_POLICIES = (
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)
TASK_ROLE_POLICY_NAME = "starburst-s3-session-data"
EXECUTION_ROLE_POLICY_NAME = "starburst-create-log-group"
BUCKET_POLICY_SID = "StarburstDenyInsecureTransport"
LIFECYCLE_RULE_ID = "starburst-expire-session-data"
ECS_TASKS_PRINCIPAL = "ecs-tasks.amazonaws.com"


class Clients:
    """boto3 clients of one region, made on first use by :func:`starburst_executor._aws.client`.

    Passing a ``boto3.Session`` lets callers (and tests) register botocore event hooks on every
    call.  ``AWS_ENDPOINT_URL`` is honoured by boto3 itself.
    """

    def __init__(self, region: str | None = None, *, session: Any = None,
                 profile: str | None = None) -> None:
        self.session = session
        self.profile = profile
        if region is None:
            region = session.region_name if session is not None else _aws.default_region(profile)
        self.region: str | None = region
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
            self._clients[service] = _aws.client(
                service, self.require_region(), max_attempts=6, session=self.session,
                profile=self.profile)
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
        return sessions_prefix(Config(bucket=self.bucket, prefix=self.prefix))[1]


def role_name(role: str) -> str:
    """The role name of a role name or ARN (``arn:aws:iam::1:role/path/name`` -> ``name``)."""
    return role.rsplit("/", 1)[-1] if role.startswith("arn:") else role


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


def unless_missing(code: str, call: Callable[..., Any], /, **kwargs: Any) -> Any:
    """``call(**kwargs)``, or ``None`` when AWS answers with error ``code``: it is not there."""
    try:
        return call(**kwargs)
    except Exception as exc:
        if _aws.error_code(exc) != code:
            raise
        return None
