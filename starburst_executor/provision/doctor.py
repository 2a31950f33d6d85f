"""``starburst doctor``: check everything a Fargate run needs; name the fix for each failure.

Checks only read (Get/List/Describe/Head calls, a Docker ping).  A check is ``ok``, ``warn``
(may work; look), ``fail`` (a run will fail) or ``skip`` (could not be checked because an earlier
check failed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..launch.fargate import quotas
from .._aws import error_code
from ..config import Config, sessions_prefix
from ..errors import ConfigError
from .checks import FAIL, OK, SETUP, SKIP, WARN, Check, DoctorReport, format_check
from .common import (
    AWS_MANAGED_EXECUTION_POLICIES,
    ECS_TASKS_PRINCIPAL,
    Clients,
    Log,
    role_name,
    unless_missing,
)
from .network import network_checks
from .policies import allowed, principals, statements

__all__ = ["doctor", "QuotaReader"]

QuotaReader = Callable[[str, bool], "float | None"]
"""``(region, spot) -> vCPU quota``, ``None`` when unknown.  Tests inject one (moto has no
Fargate quotas); the default reads Service Quotas through :mod:`starburst_executor.launch.fargate.quotas`."""

def doctor(
    config: Config,
    *,
    clients: Clients | None = None,
    workers: int | None = None,
    quota_reader: QuotaReader | None = None,
    check_docker: bool = True,
    log: Log | None = None,
) -> DoctorReport:
    """Check credentials, region, roles, bucket, cluster, network, quotas, image and Docker.

    Args:
        config: the settings a run would use (``load_config()``).
        clients: boto3 clients (default: a new session in ``config.region``).
        workers: workers to plan for (default ``config.max_workers``; the quota check is skipped
            when neither is set).
        quota_reader: reads the Fargate vCPU quota; see :data:`QuotaReader`.
        check_docker: also ping the local Docker daemon (optional: only ``starburst build`` and
            ``backend="docker"`` need it, so a missing daemon is a warning).
        log: receives each check as it completes (progress on a slow network).

    Returns:
        A :class:`DoctorReport`.
    """
    clients = clients or Clients(config.region)
    if config.region:
        clients.region = config.region
    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        if log:
            log(format_check(check))

    runner = _Doctor(config, clients, add)
    runner.run(workers, quota_reader, check_docker)
    return DoctorReport(tuple(checks))


class _Doctor:
    def __init__(self, config: Config, clients: Clients, add: Callable[[Check], None]) -> None:
        self.config = config
        self.clients = clients
        self.add = add

    def run(self, workers: int | None, quota_reader: QuotaReader | None,
            check_docker: bool) -> None:
        names = ("region", "credentials", "execution role", "task role", "bucket", "cluster",
                 "log group", "network", "Fargate vCPU quota", "worker image")
        if not self.clients.region:
            self.add(Check("region", FAIL, "no AWS region configured",
                           "pass --region, set AWS_REGION, or run `starburst setup --region R`"))
            for name in names[1:]:
                self.add(Check(name, SKIP, "needs a region"))
        else:
            source = "config" if self.config.region else "AWS profile/environment"
            self.add(Check("region", OK, f"{self.clients.region} (from {source})"))
            if self._credentials():
                self._guarded("execution role", self._execution_role)
                self._guarded("task role", self._task_role)
                self._guarded("bucket", self._bucket)
                self._guarded("cluster", self._cluster)
                self._guarded("log group", self._log_group)
                self._guarded("network", self._network)
                self._guarded("Fargate vCPU quota", lambda: self._quota(workers, quota_reader))
                self._guarded("worker image", self._image)
            else:
                for name in names[2:]:
                    self.add(Check(name, SKIP, "needs working AWS credentials"))
        if check_docker:
            self.add(_docker_check())

    def _guarded(self, name: str, check: Callable[[], Iterable[Check]]) -> None:
        try:
            for result in check():
                self.add(result)
        except Exception as exc:  # one broken check must not hide the others
            code = error_code(exc)
            if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
                self.add(Check(name, WARN, f"cannot check: access denied ({exc})",
                               "grant your identity read access (iam:Get*, s3:Get*, ecs:Describe*, "
                               "ec2:Describe*, logs:Describe*, ecr:Describe*) or ask an admin"))
            else:
                self.add(Check(name, FAIL, f"could not be checked: {exc}",
                               "retry; if it persists, run `starburst setup`"))

    def _credentials(self) -> bool:
        try:
            identity = self.clients("sts").get_caller_identity()
        except Exception as exc:
            self.add(Check(
                "credentials", FAIL, _first_line(exc),
                "configure AWS credentials: `aws configure`, or `aws sso login --profile NAME` "
                "and AWS_PROFILE=NAME, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"))
            return False
        self.add(Check("credentials", OK,
                       f"account {identity['Account']} as {identity.get('Arn', '?')}"))
        return True

    # -- IAM -------------------------------------------------------------------------------

    def _role(self, label: str, role: str) -> tuple[dict[str, Any] | None, list[Check]]:
        name = role_name(role)
        iam = self.clients("iam")
        response = unless_missing("NoSuchEntity", iam.get_role, RoleName=name)
        if response is None:
            return None, [Check(label, FAIL, f"role {name} does not exist",
                                f"{SETUP} (it creates {name})")]
        found = response["Role"]
        trusted = principals(found.get("AssumeRolePolicyDocument"))
        if ECS_TASKS_PRINCIPAL not in trusted:
            return found, [Check(label, FAIL, f"role {name} does not trust {ECS_TASKS_PRINCIPAL}",
                                 f"{SETUP} (it resets the trust policy), or `aws iam "
                                 f"update-assume-role-policy --role-name {name} ...`")]
        return found, []

    def _execution_role(self) -> Iterable[Check]:
        name = role_name(self.config.execution_role)
        found, problems = self._role("execution role", self.config.execution_role)
        if found is None or problems:
            return problems
        iam = self.clients("iam")
        attached = {p["PolicyArn"] for page in iam.get_paginator(
            "list_attached_role_policies").paginate(RoleName=name) for p in page["AttachedPolicies"]}
        missing = [arn for arn in AWS_MANAGED_EXECUTION_POLICIES if arn not in attached]
        if missing:
            return [Check("execution role", FAIL,
                          f"role {name} lacks {', '.join(a.rsplit('/', 1)[-1] for a in missing)}",
                          f"{SETUP}, or `aws iam attach-role-policy --role-name {name} "
                          f"--policy-arn {missing[0]}`")]
        return [Check("execution role", OK, f"{name}: trusts ECS tasks, may pull images and log")]

    def _task_role(self) -> Iterable[Check]:
        name = role_name(self.config.task_role)
        found, problems = self._role("task role", self.config.task_role)
        if found is None or problems:
            return problems
        bucket = _bucket(self.config)
        if not bucket:
            return [Check("task role", WARN, f"{name} exists; no bucket configured to check",
                          SETUP)]
        iam = self.clients("iam")
        granted: list[Mapping[str, Any]] = []
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
            for policy_name in page["PolicyNames"]:
                document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)[
                    "PolicyDocument"]
                granted.extend(statements(document))
        has_attached = any(page["AttachedPolicies"] for page in iam.get_paginator(
            "list_attached_role_policies").paginate(RoleName=name))
        key = f"arn:aws:s3:::{bucket}/{sessions_prefix(self.config)[1]}x"
        needed = {
            "s3:GetObject": key,
            "s3:PutObject": key,
            "s3:ListBucket": f"arn:aws:s3:::{bucket}",
        }
        missing = [a for a, r in needed.items() if not allowed(granted, a, r)]
        if not missing:
            return [Check("task role", OK, f"{name}: may read and write s3://{bucket}")]
        if has_attached:
            return [Check("task role", WARN,
                          f"{name}: inline policies do not grant {', '.join(missing)} on "
                          f"{bucket}; attached policies were not evaluated",
                          f"{SETUP} to add the inline policy, or check the attached ones")]
        return [Check("task role", FAIL,
                      f"{name} may not {', '.join(missing)} on s3://{bucket}",
                      f"{SETUP} (it writes the inline policy starburst-s3-session-data)")]

    # -- S3, ECS, Logs ----------------------------------------------------------------------

    def _bucket(self) -> Iterable[Check]:
        bucket = _bucket(self.config)
        if not bucket:
            return [Check("bucket", FAIL, "no bucket configured",
                          f"{SETUP}, or set STARBURST_BUCKET")]
        s3 = self.clients("s3")
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                return [Check("bucket", FAIL, f"s3://{bucket} does not exist", SETUP)]
            if code in ("403", "AccessDenied", "Forbidden"):
                return [Check("bucket", FAIL, f"access to s3://{bucket} denied",
                              "use a bucket of this account (`starburst setup --bucket NAME`) "
                              "or grant s3:ListBucket/GetObject/PutObject on it")]
            raise
        try:
            block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            private = all(block.values())
        except Exception:
            private = False
        if not private:
            return [Check("bucket", WARN, f"s3://{bucket} does not block all public access",
                          f"{SETUP} (it turns on the public access block)")]
        return [Check("bucket", OK, f"s3://{bucket} exists and is private")]

    def _cluster(self) -> Iterable[Check]:
        name = self.config.cluster
        clusters = self.clients("ecs").describe_clusters(clusters=[name])["clusters"]
        cluster = next((c for c in clusters if c.get("status") == "ACTIVE"), None)
        if cluster is None:
            return [Check("cluster", FAIL, f"ECS cluster {name} does not exist", SETUP)]
        providers = set(cluster.get("capacityProviders") or [])
        wanted = {"FARGATE_SPOT"} if self.config.spot else {"FARGATE"}
        if not wanted <= providers:
            return [Check("cluster", FAIL,
                          f"cluster {name} lacks the {', '.join(sorted(wanted))} capacity provider",
                          f"{SETUP} (it adds FARGATE and FARGATE_SPOT)")]
        return [Check("cluster", OK, f"{name} with {', '.join(sorted(providers))}")]

    def _log_group(self) -> Iterable[Check]:
        name = self.config.log_group
        groups = self.clients("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        group = next((g for g in groups if g["logGroupName"] == name), None)
        if group is None:
            # Tasks create it (awslogs-create-group), if the execution role may.
            return [Check("log group", WARN,
                          f"log group {name} does not exist: each task creates it at start if "
                          f"the execution role may (logs:CreateLogGroup; setup grants it), "
                          "with no retention limit", SETUP)]
        keep = group.get("retentionInDays")
        return [Check("log group", OK,
                      f"{name}, " + (f"kept {keep} days" if keep else "kept forever"))]

    def _network(self) -> Iterable[Check]:
        return network_checks(self.config, self.clients("ec2"))

    # -- quota, image -----------------------------------------------------------------------

    def _quota(self, workers: int | None, reader: QuotaReader | None) -> Iterable[Check]:
        region = self.clients.require_region()
        workers = workers or self.config.max_workers
        spot = self.config.spot
        kind = "Spot" if spot else "on-demand"
        if reader is None:
            def reader(region: str, spot: bool) -> float | None:
                return quotas.fargate_vcpu_quota(
                    region, spot=spot, client=self.clients("service-quotas"))
        quota = reader(region, spot)
        if quota is None:
            needed_text = (f"; {workers} x {self.config.cpu:g} vCPU needs "
                           f"{workers * self.config.cpu:g}" if workers else "")
            return [Check("Fargate vCPU quota", WARN,
                          f"cannot read the {kind} quota (Service Quotas unavailable)"
                          + needed_text,
                          f"check it in the console, or set {quotas.ENV_QUOTA_FALLBACK}; "
                          "to ask for more: " + quotas.increase_hint(
                              region, spot, workers * self.config.cpu if workers else None))]
        try:
            in_use = quotas.vcpus_in_use(self.config.cluster, region, spot=spot,
                                         client=self.clients("ecs"))
        except Exception:  # the cluster check reports a missing cluster
            in_use = 0.0
        busy = f", {in_use:g} in use" if in_use else ""
        if not workers:
            return [Check("Fargate vCPU quota", OK,
                          f"{quota:g} {kind} vCPUs{busy} (pass --workers to compare with a run)")]
        needed = workers * self.config.cpu
        free = max(0.0, quota - in_use)
        if needed > free:
            waves = int(free // self.config.cpu)
            return [Check("Fargate vCPU quota", WARN,
                          f"{workers} workers x {self.config.cpu:g} vCPU = {needed:g} vCPUs > "
                          f"quota {quota:g}{busy}: runs in waves of {waves}",
                          quotas.increase_hint(region, spot, needed + in_use))]
        return [Check("Fargate vCPU quota", OK,
                      f"{needed:g} of {quota:g} {kind} vCPUs{busy} for {workers} x "
                      f"{self.config.cpu:g} vCPU")]

    def _image(self) -> Iterable[Check]:
        image = self.config.image
        if not image:
            return [Check("worker image", FAIL, "no worker image configured",
                          "run `starburst build` (it builds, pushes and records the image)")]
        repository, tag, digest = _parse_image(image)
        if ".dkr.ecr." not in image.split("/", 1)[0]:
            return [Check("worker image", WARN, f"{image} is not in ECR; not checked",
                          "make sure Fargate can pull it (public, or credentials)")]
        ecr = self.clients("ecr")
        image_id = {"imageDigest": digest} if digest else {"imageTag": tag or "latest"}
        try:
            ecr.describe_images(repositoryName=repository, imageIds=[image_id])
        except Exception as exc:
            code = error_code(exc)
            if code == "RepositoryNotFoundException":
                return [Check("worker image", FAIL, f"ECR repository {repository} does not exist",
                              f"{SETUP}, then `starburst build`")]
            if code == "ImageNotFoundException":
                return [Check("worker image", FAIL, f"{image} is not in ECR",
                              "run `starburst build`")]
            raise
        return [Check("worker image", OK, f"{image} is in ECR")]


def _docker_check() -> Check:
    try:
        import docker
    except ImportError:
        return Check("docker", WARN, "the docker Python package is not installed",
                     "pip install 'starburst-executor[docker]' (needed by `starburst build`)")
    try:
        client = docker.from_env(timeout=5)
        try:
            version = client.version().get("Version", "?")
        finally:
            client.close()
    except Exception as exc:
        return Check("docker", WARN, f"no Docker daemon ({_first_line(exc)})",
                     "start Docker (needed by `starburst build` and backend='docker' only)")
    return Check("docker", OK, f"daemon {version}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _bucket(config: Config) -> str | None:
    """The bucket of the S3 store, ``None`` when none is configured."""
    try:
        return sessions_prefix(config)[0]
    except ConfigError:
        return None


def _parse_image(image: str) -> tuple[str, str | None, str | None]:
    """``host/repo/name:tag@sha256:...`` -> (``repo/name``, tag, digest)."""
    rest = image.split("/", 1)[1] if "/" in image else image
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
    tag = None
    if ":" in rest:
        rest, tag = rest.rsplit(":", 1)
    return rest, tag, digest
