"""ECR for worker images: the repository, push credentials, and "is this tag there already?".

The tag check speaks the registry's own HTTP API (``HEAD /v2/<repo>/manifests/<tag>``) with the
ECR token, so it needs no Docker daemon, and works the same against ECR and against a plain
registry that stands in for it in tests (``registry=`` / ``STARBURST_REGISTRY``).
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

from .. import _aws, _tags
from ..config import Config
from ..errors import ImageError

__all__ = ["Registry", "ecr_registry", "ecr_target", "manifest_exists", "registry_has",
           "is_loopback_host"]

_MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


@dataclasses.dataclass(frozen=True)
class Registry:
    """Where to push: ``host`` (``123.dkr.ecr.us-east-1.amazonaws.com``), a repository in it, and
    the basic-auth credentials from the ECR token."""

    host: str
    repository: str
    username: str
    password: str = dataclasses.field(repr=False)

    @property
    def repository_uri(self) -> str:
        return f"{self.host}/{self.repository}"

    def auth_config(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``/``127.x``/``::1``, with or without a port."""
    name = urlparse("//" + host).hostname or host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def ecr_registry(ecr: Any, repository: str, *, host_override: str | None = None) -> Registry:
    """Find or create the ECR ``repository`` (tagged as the project's) and get push credentials.

    ``host_override`` replaces the registry host ECR names, for a stand-in registry in tests.
    Raises botocore errors; :func:`ecr_target` translates them.
    """
    try:
        found = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        found = ecr.create_repository(
            repositoryName=repository,
            tags=[{"Key": k, "Value": v} for k, v in _tags.resource_tags().items()],
            imageScanningConfiguration={"scanOnPush": False},
        )["repository"]
    auth = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
    host = host_override or found["repositoryUri"].split("/", 1)[0]
    return Registry(host=host, repository=repository, username=user, password=password)


def manifest_exists(registry: Registry, tag: str, timeout: float = 20.0) -> bool:
    """Whether ``registry`` holds ``tag`` (one HEAD request).  Raises ``OSError`` when the registry
    cannot be reached, ``PermissionError`` when it refuses the credentials."""
    scheme = "http" if is_loopback_host(registry.host) else "https"
    url = f"{scheme}://{registry.host}/v2/{registry.repository}/manifests/{tag}"
    token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    request = urllib.request.Request(
        url, method="HEAD", headers={"Authorization": f"Basic {token}", "Accept": _MANIFEST_TYPES}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return bool(200 <= response.status < 300)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        if exc.code in (401, 403):
            raise PermissionError(
                f"registry {registry.host} refused the ECR credentials (HTTP {exc.code})"
            ) from None
        raise OSError(f"registry {registry.host} answered HTTP {exc.code} for {url}") from None


def ecr_target(config: Config, repository: str, registry: str | None, ecr: Any = None) -> Registry:
    """:func:`ecr_registry` with an ECR client of ``config.region`` (unless ``ecr`` is given).

    Raises:
        ConfigError: no AWS credentials or region.
        ImageError: ECR cannot be reached or refuses a call.
    """
    try:
        ecr = ecr or _aws.client("ecr", config.region)
        return ecr_registry(ecr, repository, host_override=registry)
    except Exception as exc:
        if not _aws.is_aws_error(exc):
            raise
        raise _aws.translate(exc, service="ecr", operation=getattr(exc, "operation_name", ""),
                             resource=repository, family=ImageError) from None


def registry_has(target: Registry, tag: str) -> bool:
    """:func:`manifest_exists`, its failures as :class:`ImageError` saying what to check."""
    try:
        return manifest_exists(target, tag)
    except PermissionError as exc:
        raise ImageError(f"{exc}: check that your credentials may pull from ECR") from None
    except OSError as exc:
        raise ImageError(
            f"cannot reach the registry {target.host} ({exc}): check the network, and for a "
            "stand-in registry that it is running"
        ) from None
