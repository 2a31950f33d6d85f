"""Fargate quick start: a parameter sweep on AWS Fargate workers.

Once per account and environment (see docs/fargate.md):

    starburst setup --region us-east-1
    starburst build

then:

    python examples/fargate_quickstart.py

Without an AWS account, the same script runs on the emulated Fargate of
``starburst_executor.testing`` (a moto server and worker subprocesses; needs ``moto[server]``):

    python examples/fargate_quickstart.py --emulated
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
from collections.abc import Iterator
from typing import Any

from starburst_executor import FargateExecutor


def simulate(rate: float, steps: int = 20_000, seed: int = 0) -> tuple[float, float]:
    """A toy model: the mean and spread of a noisy growth process at ``rate``."""
    rng = random.Random(seed)
    value, values = 1.0, []
    for _ in range(steps):
        value *= 1.0 + rate + rng.gauss(0.0, 0.01)
        value = min(value, 1e6)
        values.append(value)
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return mean, spread


@contextlib.contextmanager
def emulated_aws() -> Iterator[dict[str, Any]]:
    """Settings of a throwaway AWS on this machine: moto plus emulated Fargate tasks."""
    import boto3

    from starburst_executor.testing import FargateEmulator, MotoServer

    with MotoServer() as moto, FargateEmulator(moto) as fargate, fargate.patched_environ():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="starburst-example")
        boto3.client("ecs", region_name="us-east-1").create_cluster(clusterName="starburst")
        yield dict(bucket="starburst-example", region="us-east-1", image="emulated/worker:1")
        print(f"AWS requests (emulated): {fargate.proxy.count()} in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulated", action="store_true", help="no AWS: moto + subprocesses")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    context = emulated_aws() if args.emulated else contextlib.nullcontext({})
    with context as settings:
        rates = [r / 10_000 for r in range(-20, 21)]
        with FargateExecutor(max_workers=args.workers, cpu=0.5, memory="1GB",
                             **settings) as ex:
            results = list(ex.map(simulate, rates))
            usage = ex.usage()
        best = max(zip(rates, results), key=lambda pair: pair[1][0] / (1 + pair[1][1]))
        print(f"{len(results)} simulations; best rate {best[0]:+.4f} "
              f"(mean {best[1][0]:.3g}, spread {best[1][1]:.3g})")
        line = f"{usage.tasks_launched} Fargate tasks, {usage.task_seconds:.0f} task-seconds"
        if usage.cost is not None:
            line += f", about ${usage.cost:.4f}"
        print(line)


if __name__ == "__main__":
    main()
