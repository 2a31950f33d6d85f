"""AWS requests and tasks of a map on the emulated Fargate (moto + subprocess workers).

    python benchmarks/fargate_requests.py [--items 10000] [--json]

Runs ``FargateExecutor(backend="fargate").map(square, range(items))`` at default settings (only
the bucket, cluster, image and region the emulation needs are given) and prints:

* every request that reached AWS, by service and operation, counted by the proxy that the
  client and the workers (subprocesses) both go through, and the client's share of them;
* S3+ECS requests per item (bound: at most 0.02);
* tasks launched (bound: no more than ``max_workers``, although there are more batches).

Exits 1 when a bound is not met.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3  # noqa: E402

from starburst_executor import FargateExecutor  # noqa: E402
from starburst_executor.testing import FargateEmulator, MotoServer  # noqa: E402

REQUESTS_PER_ITEM_BOUND = 0.02
REGION = "us-east-1"


def square(x: int) -> int:
    return x * x


def _setup(moto: MotoServer) -> tuple[str, str]:
    """What `starburst setup` leaves: a bucket, a cluster, the workers' log group and security
    group (tasks never fall back to the VPC's default group)."""
    kwargs = dict(region_name=REGION, endpoint_url=moto.endpoint,
                  aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = f"starburst-bench-{uuid.uuid4().hex[:8]}"
    cluster = "starburst"
    boto3.client("s3", **kwargs).create_bucket(Bucket=bucket)
    boto3.client("ecs", **kwargs).create_cluster(clusterName=cluster)
    boto3.client("logs", **kwargs).create_log_group(logGroupName="/starburst/workers")
    ec2 = boto3.client("ec2", **kwargs)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    ec2.create_security_group(GroupName="starburst-workers", VpcId=vpc["VpcId"],
                              Description="starburst-executor workers")
    return bucket, cluster


def run(items: int) -> dict[str, object]:
    with MotoServer() as moto, FargateEmulator(moto) as fargate, fargate.patched_environ():
        for name in list(os.environ):
            if name.startswith("STARBURST_"):
                del os.environ[name]
        os.environ["STARBURST_CONFIG"] = os.devnull + ".none"  # no config file: defaults
        bucket, cluster = _setup(moto)
        fargate.proxy.reset_counts()
        started = time.monotonic()
        with FargateExecutor(backend="fargate", region=REGION, bucket=bucket, cluster=cluster,
                             image="123456789012.dkr.ecr.us-east-1.amazonaws.com/w:bench") as ex:
            results = list(ex.map(square, range(items)))
        elapsed = time.monotonic() - started
        assert results == [square(i) for i in range(items)], "wrong results"
        stopped = fargate.wait_stopped(30)
        usage = ex.usage()
        requests = {f"{s}.{o}": n for (s, o), n in sorted(fargate.proxy.requests.items())}
        s3_ecs = sum(n for (s, _), n in fargate.proxy.requests.items() if s in ("s3", "ecs"))
        # The launcher's own calls to other services (sts, ec2, logs...) are "ecs.<svc>.<Op>"
        # or "<svc>.<Op>" in usage; S3 and ECS ones are "s3.<Op>" and "ecs.<Op>".
        client_s3_ecs = sum(n for k, n in usage.requests.items()
                            if k.startswith("s3.") or (k.startswith("ecs.") and k.count(".") == 1))
        return {
            "items": items,
            "seconds": round(elapsed, 2),
            "max_workers": ex.max_workers,
            "batches": usage.batches,
            "tasks_launched": len(fargate.tasks),
            "all_tasks_stopped": stopped,
            "requests": requests,
            "s3_ecs_requests": s3_ecs,
            "s3_ecs_requests_by_client": client_s3_ecs,
            "s3_ecs_requests_by_workers": s3_ecs - client_s3_ecs,
            "s3_ecs_requests_per_item": round(s3_ecs / items, 5),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report = run(args.items)
    per_item_ok = float(report["s3_ecs_requests_per_item"]) <= REQUESTS_PER_ITEM_BOUND  # type: ignore[arg-type]
    tasks_ok = int(report["tasks_launched"]) <= int(report["max_workers"])  # type: ignore[call-overload]
    if args.json:
        print(json.dumps({**report, "per_item_ok": per_item_ok, "tasks_ok": tasks_ok}))
    else:
        print(f"map of {report['items']} items in {report['seconds']} s, "
              f"{report['batches']} batches, max_workers={report['max_workers']}")
        print("requests by service.operation (client and workers):")
        for name, n in report["requests"].items():  # type: ignore[attr-defined]
            print(f"  {name:42s} {n:6d}")
        print(f"S3+ECS requests: {report['s3_ecs_requests']} "
              f"(client {report['s3_ecs_requests_by_client']}, "
              f"workers {report['s3_ecs_requests_by_workers']})")
        print(f"S3+ECS requests per item: {report['s3_ecs_requests_per_item']} "
              f"(bound {REQUESTS_PER_ITEM_BOUND}) {'OK' if per_item_ok else 'OVER'}")
        print(f"tasks launched: {report['tasks_launched']} (bound max_workers="
              f"{report['max_workers']}) {'OK' if tasks_ok else 'OVER'}; all stopped after "
              f"shutdown: {report['all_tasks_stopped']}")
    return 0 if per_item_ok and tasks_ok and report["all_tasks_stopped"] else 1


if __name__ == "__main__":
    sys.exit(main())
