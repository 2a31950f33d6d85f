"""Quick start: a Monte Carlo estimate of pi, spread over workers.

Runs on your machine with no AWS account (worker processes, a local directory as the store):

    python examples/quickstart.py

The same code runs on AWS Fargate once `starburst setup` and `starburst build` are done:

    STARBURST_BACKEND=fargate python examples/quickstart.py
"""

from __future__ import annotations

import os
import random
import time

from starburst_executor import FargateExecutor, starburst_map


def darts(seed: int, throws: int = 200_000) -> int:
    """Throw darts at the unit square; count those inside the quarter circle."""
    rng = random.Random(seed)
    return sum(rng.random() ** 2 + rng.random() ** 2 <= 1.0 for _ in range(throws))


def main() -> None:
    backend = os.environ.get("STARBURST_BACKEND", "local")
    started = time.perf_counter()
    with FargateExecutor(max_workers=4, cpu=1, memory="2GB", backend=backend) as executor:
        # The stdlib contract: this line works the same with ProcessPoolExecutor.
        print(sum(executor.map(lambda x: x * x, range(10_000))))

        hits = list(executor.map(darts, range(40)))
        pi = 4 * sum(hits) / (40 * 200_000)
        print(f"pi is about {pi:.4f} ({len(hits)} calls)")

        future = executor.submit(darts, 12345, throws=1000)
        meta = future.metadata
        print(f"one call: {future.result()} hits, batch {meta.batch_id} on worker "
              f"{meta.worker_id}, attempts {meta.attempts}")
        usage = executor.usage()
        print(f"{usage.calls} calls in {usage.batches} batches on {usage.tasks_launched} workers")

    # staRburst's names work too.
    squares = starburst_map(range(10), lambda x: x**2, workers=2, backend=backend)
    print("starburst_map:", squares)
    print(f"done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
