"""The doctor's network checks: subnets, security groups, and each subnet's way out to AWS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..config import Config
from .checks import FAIL, OK, SETUP, WARN, Check

__all__ = ["network_checks"]


def network_checks(config: Config, ec2: Any) -> list[Check]:
    """Subnets, security groups, and whether each subnet can reach ECR, S3 and Logs."""
    subnets = list(config.subnets)
    if not subnets:
        return [Check("network", FAIL, "no subnets configured",
                      f"{SETUP}, or set STARBURST_SUBNETS=subnet-...,subnet-...")]
    found = ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
    checks: list[Check] = []
    if not config.security_groups:
        checks.append(Check("security group", FAIL, "no security group configured", SETUP))
    else:
        groups = ec2.describe_security_groups(GroupIds=list(config.security_groups))[
            "SecurityGroups"]
        if not any(g.get("IpPermissionsEgress") for g in groups):
            checks.append(Check("security group", FAIL,
                                f"{', '.join(config.security_groups)} allow no outbound "
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
        check = _subnet_egress(config, subnet, tables, endpoints)
        verdicts.setdefault((check.status, check.detail, check.fix), []).append(
            subnet["SubnetId"])
    for (state, detail, fix), ids in verdicts.items():
        label = ("subnet " if len(ids) == 1 else "subnets ") + ", ".join(sorted(ids))
        checks.append(Check(label, state, detail, fix))
    return checks


def _subnet_egress(config: Config, subnet: Mapping[str, Any], tables: Sequence[Mapping[str, Any]],
                   endpoints: set[str]) -> Check:
    table = _route_table(subnet["SubnetId"], subnet["VpcId"], tables)
    routes = [r for r in (table or {}).get("Routes", [])
              if r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("State") != "blackhole"]
    label = "subnet"
    if any(str(r.get("GatewayId", "")).startswith("igw-") for r in routes):
        if config.assign_public_ip:
            return Check(label, OK, "internet gateway route; tasks get a public IP")
        return Check(label, FAIL, "internet gateway route but assign_public_ip is off: "
                     "tasks get no public IP and cannot reach ECR or S3",
                     "set assign_public_ip=true (STARBURST_ASSIGN_PUBLIC_IP=1), or use "
                     "private subnets with a NAT gateway")
    if any(r.get("NatGatewayId") for r in routes):
        if config.assign_public_ip:
            return Check(label, WARN, "NAT gateway route to the internet, yet tasks get a "
                         "public IP they do not need",
                         "set assign_public_ip=false (STARBURST_ASSIGN_PUBLIC_IP=0), or run "
                         "`starburst setup`, which decides it from the routes")
        return Check(label, OK, "NAT gateway route to the internet; tasks get no public IP")
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


def _route_table(subnet: str, vpc: str, tables: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for table in tables:
        if any(a.get("SubnetId") == subnet for a in table.get("Associations", [])):
            return table
    for table in tables:
        if table.get("VpcId") == vpc and any(a.get("Main") for a in table.get("Associations", [])):
            return table
    return None
