"""Fargate vCPU quotas: how many vCPUs this account may run at once, and how many it runs.

Fargate limits the vCPUs of all running tasks of an account in a region (Service Quotas codes
``L-3032A538`` on-demand and ``L-36FBB829`` Spot).  New accounts get a small quota, so a map with
``max_workers=50, cpu=4`` may not fit: the Fargate launcher runs the work in waves that do fit and
warns once, with the command that asks for more.  ``starburst doctor`` shows the same numbers.

Public API::

    fargate_vcpu_quota(region, spot=False, fallback=None) -> float | None
    vcpus_in_use(cluster, region, spot=None) -> float
    increase_hint(region, spot, desired=None) -> str
    workers_that_fit(wanted, cpu, quota, in_use, region=..., spot=...) -> int  (warns if < wanted)

Service Quotas cannot be read everywhere (no permission, moto); the quota then comes from the
``fallback`` argument, else the ``STARBURST_FARGATE_VCPU_QUOTA`` environment variable, else it is
unknown (``None``) and nothing is capped.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from ... import _aws
from ...errors import ConfigError, StarburstError

log = logging.getLogger(__name__)

__all__ = [
    "ON_DEMAND_QUOTA_CODE",
    "workers_within_quota",
    "SPOT_QUOTA_CODE",
    "ENV_QUOTA_FALLBACK",
    "quota_code",
    "fargate_vcpu_quota",
    "vcpus_in_use",
    "increase_hint",
    "workers_that_fit",
]

ON_DEMAND_QUOTA_CODE = "L-3032A538"
"""Service Quotas code of "Fargate On-Demand vCPU resource count"."""
SPOT_QUOTA_CODE = "L-36FBB829"
"""Service Quotas code of "Fargate Spot vCPU resource count"."""
ENV_QUOTA_FALLBACK = "STARBURST_FARGATE_VCPU_QUOTA"
"""Environment variable with the quota to assume when Service Quotas cannot be read."""

_DESCRIBE_LIMIT = 100


def quota_code(spot: bool) -> str:
    """The Service Quotas code of the on-demand or Spot Fargate vCPU quota."""
    return SPOT_QUOTA_CODE if spot else ON_DEMAND_QUOTA_CODE


def _env_fallback() -> float | None:
    raw = os.environ.get(ENV_QUOTA_FALLBACK, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"{ENV_QUOTA_FALLBACK}={raw!r} is not a number of vCPUs (e.g. 256)"
        ) from None
    if value <= 0:
        raise ConfigError(f"{ENV_QUOTA_FALLBACK} must be a positive number of vCPUs, got {raw}")
    return value


def fargate_vcpu_quota(
    region: str | None = None,
    *,
    spot: bool = False,
    fallback: float | None = None,
    client: Any = None,
) -> float | None:
    """The account's Fargate vCPU quota in ``region``, or ``None`` if it cannot be known.

    Args:
        region: AWS region (default: boto3's).
        spot: the Spot quota instead of the on-demand one.
        fallback: the quota to assume when Service Quotas cannot be read (no permission, an
            emulator); else ``STARBURST_FARGATE_VCPU_QUOTA``, else ``None``.
        client: a ``service-quotas`` boto3 client to use instead of a new one.
    """
    try:
        sq = client or _aws.client("service-quotas", region, max_attempts=3)
        response = sq.get_service_quota(ServiceCode="fargate", QuotaCode=quota_code(spot))
        return float(response["Quota"]["Value"])
    except Exception:  # noqa: S110 - no permission, no region, moto: the fallback decides
        pass
    if fallback is not None:
        return float(fallback)
    return _env_fallback()


def vcpus_in_use(
    cluster: str,
    region: str | None = None,
    *,
    spot: bool | None = None,
    client: Any = None,
) -> float:
    """vCPUs of the Fargate tasks running or starting in ``cluster``.

    Args:
        cluster: the ECS cluster's name or ARN.
        region: AWS region (default: boto3's).
        spot: count only Spot tasks (``True``), only on-demand ones (``False``), or all (``None``).
        client: an ``ecs`` boto3 client to use instead of a new one.

    Raises:
        LaunchError, ConfigError: the cluster cannot be read (translated AWS error).
    """
    ecs = client or _aws.client("ecs", region)
    arns: list[str] = []
    try:
        paginator = ecs.get_paginator("list_tasks")
        for page in paginator.paginate(cluster=cluster, desiredStatus="RUNNING"):
            arns.extend(page.get("taskArns", []))
        total = 0.0
        for start in range(0, len(arns), _DESCRIBE_LIMIT):
            response = ecs.describe_tasks(cluster=cluster, tasks=arns[start:start + _DESCRIBE_LIMIT])
            for task in response.get("tasks", []):
                if task.get("lastStatus") == "STOPPED":
                    continue
                provider = task.get("capacityProviderName") or ""
                if task.get("launchType") != "FARGATE" and not provider.startswith("FARGATE"):
                    continue
                if spot is not None and (provider == "FARGATE_SPOT") != spot:
                    continue
                total += int(task.get("cpu") or 0) / 1024
    except Exception as exc:
        if _aws.error_code(exc) == "ClusterNotFoundException":
            return 0.0
        raise _aws.translate(exc, service="ecs", operation="DescribeTasks",
                             resource=f"cluster {cluster}") from None
    return total


def increase_hint(region: str, spot: bool, desired: float | None = None) -> str:
    """How to ask AWS for a larger Fargate vCPU quota: a CLI command and a console link."""
    code = quota_code(spot)
    value = f"{desired:g}" if desired is not None else "N"
    return (
        f"aws service-quotas request-service-quota-increase --service-code fargate "
        f"--quota-code {code} --desired-value {value} --region {region}  (or "
        f"https://{region}.console.aws.amazon.com/servicequotas/home/services/fargate/quotas/"
        f"{code})"
    )


def workers_that_fit(wanted: int, cpu: float, quota: float, in_use: float, *, region: str,
                     spot: bool) -> int:
    """How many workers of ``cpu`` vCPUs may run at once: ``wanted`` if they fit in the quota
    left, else as many as fit (at least one, so the work runs in waves) with a warning that
    says how to ask for more."""
    fit = int((quota - in_use) // cpu)
    if fit >= wanted:
        return wanted
    workers = max(1, fit)
    kind = "Spot" if spot else "On-Demand"
    warnings.warn(
        f"the Fargate {kind} vCPU quota in {region} is {quota:g} vCPUs and "
        f"{in_use:g} are in use, so {workers} workers of {cpu:g} vCPU run at once "
        f"instead of {wanted} (the work runs in waves). To raise the quota: "
        f"{increase_hint(region, spot, desired=wanted * cpu + in_use)}",
        stacklevel=3,
    )
    return workers


def workers_within_quota(wanted: int, cpu: float, cluster: str, region: str, *, spot: bool,
                         fallback: float | None, quotas_client: Any, ecs_client: Any) -> int:
    """:func:`workers_that_fit` with the quota and the vCPUs in use read from AWS: ``wanted``
    when the quota cannot be read; the vCPUs in use count as none when they cannot be."""
    quota = fargate_vcpu_quota(region, spot=spot, fallback=fallback, client=quotas_client)
    if quota is None:
        return wanted
    try:
        in_use = vcpus_in_use(cluster, region, spot=spot, client=ecs_client)
    except StarburstError as exc:
        log.debug("cannot count the vCPUs in use: %s", exc)
        in_use = 0.0
    return workers_that_fit(wanted, cpu, quota, in_use, region=region, spot=spot)
