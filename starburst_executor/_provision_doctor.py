"""``starburst doctor``: check everything a Fargate run needs; name the fix for each failure.

Checks only read (Get/List/Describe/Head calls, a Docker ping).  A check is ``ok``, ``warn``
(may work; look), ``fail`` (a run will fail) or ``skip`` (could not be checked because an earlier
check failed).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._provision_common import (
    AWS_MANAGED_EXECUTION_POLICIES,
    ECS_TASKS_PRINCIPAL,
    Clients,
    Log,
    error_code,
    role_name,
)
from .config import Config

__all__ = ["Check", "DoctorReport", "doctor", "QuotaReader"]

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"

QuotaReader = Callable[[str, bool], "float | None"]
"""``(region, spot) -> vCPU quota``, ``None`` when unknown.  Tests inject one (moto has no
Fargate quotas); the default reads Service Quotas through :mod:`starburst_executor.quotas`."""

_SETUP = "run `starburst setup`"


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DoctorReport:
    """Every check, in order; ``ok`` is false when one failed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.status != FAIL for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


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


_MARKS = {OK: "[ ok ]", WARN: "[warn]", FAIL: "[FAIL]", SKIP: "[skip]"}


def format_check(check: Check) -> str:
    """``[ ok ] name: detail`` and, for a warning or failure, an indented ``fix:`` line."""
    line = f"{_MARKS.get(check.status, check.status)} {check.name}: {check.detail}"
    if check.fix and check.status in (WARN, FAIL):
        line += f"\n       fix: {check.fix}"
    return line


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
        try:
            found = iam.get_role(RoleName=name)["Role"]
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            return None, [Check(label, FAIL, f"role {name} does not exist",
                                f"{_SETUP} (it creates {name})")]
        trusted = _principals(found.get("AssumeRolePolicyDocument"))
        if ECS_TASKS_PRINCIPAL not in trusted:
            return found, [Check(label, FAIL, f"role {name} does not trust {ECS_TASKS_PRINCIPAL}",
                                 f"{_SETUP} (it resets the trust policy), or `aws iam "
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
                          f"{_SETUP}, or `aws iam attach-role-policy --role-name {name} "
                          f"--policy-arn {missing[0]}`")]
        return [Check("execution role", OK, f"{name}: trusts ECS tasks, may pull images and log")]

    def _task_role(self) -> Iterable[Check]:
        name = role_name(self.config.task_role)
        found, problems = self._role("task role", self.config.task_role)
        if found is None or problems:
            return problems
        bucket = _bucket_and_prefix(self.config)[0]
        if not bucket:
            return [Check("task role", WARN, f"{name} exists; no bucket configured to check",
                          _SETUP)]
        iam = self.clients("iam")
        statements: list[Mapping[str, Any]] = []
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
            for policy_name in page["PolicyNames"]:
                document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)[
                    "PolicyDocument"]
                statements.extend(_statements(document))
        has_attached = any(page["AttachedPolicies"] for page in iam.get_paginator(
            "list_attached_role_policies").paginate(RoleName=name))
        needed = {
            "s3:GetObject": f"arn:aws:s3:::{bucket}/x",
            "s3:PutObject": f"arn:aws:s3:::{bucket}/x",
            "s3:ListBucket": f"arn:aws:s3:::{bucket}",
        }
        missing = [a for a, r in needed.items() if not _allowed(statements, a, r)]
        if not missing:
            return [Check("task role", OK, f"{name}: may read and write s3://{bucket}")]
        if has_attached:
            return [Check("task role", WARN,
                          f"{name}: inline policies do not grant {', '.join(missing)} on "
                          f"{bucket}; attached policies were not evaluated",
                          f"{_SETUP} to add the inline policy, or check the attached ones")]
        return [Check("task role", FAIL,
                      f"{name} may not {', '.join(missing)} on s3://{bucket}",
                      f"{_SETUP} (it writes the inline policy starburst-s3-session-data)")]

    # -- S3, ECS, Logs ----------------------------------------------------------------------

    def _bucket(self) -> Iterable[Check]:
        bucket, _ = _bucket_and_prefix(self.config)
        if not bucket:
            return [Check("bucket", FAIL, "no bucket configured",
                          f"{_SETUP}, or set STARBURST_BUCKET")]
        s3 = self.clients("s3")
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                return [Check("bucket", FAIL, f"s3://{bucket} does not exist", _SETUP)]
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
                          f"{_SETUP} (it turns on the public access block)")]
        return [Check("bucket", OK, f"s3://{bucket} exists and is private")]

    def _cluster(self) -> Iterable[Check]:
        name = self.config.cluster
        clusters = self.clients("ecs").describe_clusters(clusters=[name])["clusters"]
        cluster = next((c for c in clusters if c.get("status") == "ACTIVE"), None)
        if cluster is None:
            return [Check("cluster", FAIL, f"ECS cluster {name} does not exist", _SETUP)]
        providers = set(cluster.get("capacityProviders") or [])
        wanted = {"FARGATE_SPOT"} if self.config.spot else {"FARGATE"}
        if not wanted <= providers:
            return [Check("cluster", FAIL,
                          f"cluster {name} lacks the {', '.join(sorted(wanted))} capacity provider",
                          f"{_SETUP} (it adds FARGATE and FARGATE_SPOT)")]
        return [Check("cluster", OK, f"{name} with {', '.join(sorted(providers))}")]

    def _log_group(self) -> Iterable[Check]:
        name = self.config.log_group
        groups = self.clients("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        group = next((g for g in groups if g["logGroupName"] == name), None)
        if group is None:
            return [Check("log group", FAIL, f"log group {name} does not exist", _SETUP)]
        keep = group.get("retentionInDays")
        return [Check("log group", OK,
                      f"{name}, " + (f"kept {keep} days" if keep else "kept forever"))]

    # -- network ----------------------------------------------------------------------------

    def _network(self) -> Iterable[Check]:
        subnets = list(self.config.subnets)
        if not subnets:
            return [Check("network", FAIL, "no subnets configured",
                          f"{_SETUP}, or set STARBURST_SUBNETS=subnet-...,subnet-...")]
        ec2 = self.clients("ec2")
        found = ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
        checks: list[Check] = []
        if not self.config.security_groups:
            checks.append(Check("security group", FAIL, "no security group configured", _SETUP))
        else:
            groups = ec2.describe_security_groups(GroupIds=list(self.config.security_groups))[
                "SecurityGroups"]
            if not any(g.get("IpPermissionsEgress") for g in groups):
                checks.append(Check("security group", FAIL,
                                    f"{', '.join(self.config.security_groups)} allow no outbound "
                                    "traffic: tasks cannot reach ECR or S3",
                                    "allow outbound HTTPS (443) to 0.0.0.0/0, or run "
                                    "`starburst setup`"))
            else:
                inbound = [g["GroupId"] for g in groups if g.get("IpPermissions")]
                checks.append(Check(
                    "security group", WARN if inbound else OK,
                    f"{', '.join(g['GroupId'] for g in groups)}: outbound traffic allowed"
                    + (f"; {', '.join(inbound)} also allow inbound" if inbound else
                       ", no inbound"),
                    "workers need no inbound rules; remove them" if inbound else ""))
        vpcs = {s["VpcId"] for s in found}
        endpoints: set[str] = set()
        tables: list[dict[str, Any]] = []
        for vpc in vpcs:
            for page in ec2.get_paginator("describe_vpc_endpoints").paginate(
                    Filters=[{"Name": "vpc-id", "Values": [vpc]}]):
                # com.amazonaws.<region>.ecr.api -> ecr.api
                endpoints.update(".".join(e["ServiceName"].split(".")[3:])
                                 for e in page["VpcEndpoints"]
                                 if str(e.get("State", "available")).lower() == "available")
            tables.extend(ec2.describe_route_tables(
                Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"])
        # Subnets sharing a route table share a verdict: one line for each verdict.
        verdicts: dict[tuple[str, str, str], list[str]] = {}
        for subnet in found:
            check = self._subnet_egress(subnet, tables, endpoints)
            verdicts.setdefault((check.status, check.detail, check.fix), []).append(
                subnet["SubnetId"])
        for (state, detail, fix), ids in verdicts.items():
            label = ("subnet " if len(ids) == 1 else "subnets ") + ", ".join(sorted(ids))
            checks.append(Check(label, state, detail, fix))
        return checks

    def _subnet_egress(self, subnet: Mapping[str, Any], tables: Sequence[Mapping[str, Any]],
                       endpoints: set[str]) -> Check:
        table = _route_table(subnet["SubnetId"], subnet["VpcId"], tables)
        routes = [r for r in (table or {}).get("Routes", [])
                  if r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("State") != "blackhole"]
        label = "subnet"
        if any(str(r.get("GatewayId", "")).startswith("igw-") for r in routes):
            if self.config.assign_public_ip:
                return Check(label, OK, "internet gateway route; tasks get a public IP")
            return Check(label, FAIL, "internet gateway route but assign_public_ip is off: "
                         "tasks get no public IP and cannot reach ECR or S3",
                         "set assign_public_ip=true (STARBURST_ASSIGN_PUBLIC_IP=1), or use "
                         "private subnets with a NAT gateway")
        if any(r.get("NatGatewayId") for r in routes):
            return Check(label, OK, "NAT gateway route to the internet")
        needed = {"ecr.api", "ecr.dkr", "s3", "logs"}
        if needed <= endpoints:
            return Check(label, OK, "VPC endpoints for ECR, S3 and CloudWatch Logs")
        if routes:
            return Check(label, WARN,
                         "default route through "
                         + ", ".join(sorted({k for r in routes for k in r if k.endswith("Id")
                                             and k != "RouteTableId"}))
                         + ": cannot tell whether it reaches ECR and S3",
                         "make sure tasks in this subnet can reach ECR, S3 and CloudWatch Logs")
        missing = sorted(needed - endpoints)
        return Check(label, FAIL,
                     "no route to the internet and no VPC endpoints for "
                     + ", ".join(missing) + ": tasks cannot pull the image",
                     "use subnets with an internet gateway (public) or a NAT gateway, or add "
                     "VPC endpoints for ecr.api, ecr.dkr, s3 and logs")

    # -- quota, image -----------------------------------------------------------------------

    def _quota(self, workers: int | None, reader: QuotaReader | None) -> Iterable[Check]:
        from .launch.fargate import quotas

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
                              f"{_SETUP}, then `starburst build`")]
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


def _bucket_and_prefix(config: Config) -> tuple[str | None, str]:
    store = config.store
    if store and store.startswith("s3://"):
        rest = store[len("s3://"):]
        bucket, _, prefix = rest.partition("/")
        return bucket, prefix.strip("/")
    return config.bucket, config.prefix.strip("/")


def _statements(document: Any) -> list[Mapping[str, Any]]:
    if isinstance(document, str):
        import json
        from urllib.parse import unquote

        document = json.loads(unquote(document))
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, Mapping) else list(statements)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _matches(patterns: Any, value: str, *, ignore_case: bool) -> bool:
    if ignore_case:
        return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in _as_list(patterns))
    return any(fnmatch.fnmatchcase(value, p) for p in _as_list(patterns))


def _allowed(statements: Sequence[Mapping[str, Any]], action: str, resource: str) -> bool:
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


def _principals(document: Any) -> set[str]:
    found: set[str] = set()
    for statement in _statements(document or {}):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        if isinstance(principal, Mapping):
            found.update(_as_list(principal.get("Service")))
    return found


def _route_table(subnet: str, vpc: str, tables: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for table in tables:
        if any(a.get("SubnetId") == subnet for a in table.get("Associations", [])):
            return table
    for table in tables:
        if table.get("VpcId") == vpc and any(a.get("Main") for a in table.get("Associations", [])):
            return table
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
