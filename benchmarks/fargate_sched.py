"""Scheduling on the emulated Fargate, with a modelled cold start and store latency.

    python benchmarks/fargate_sched.py [--scale 0.1] [--workers 20] [--calls 200] [--json]

The emulator (moto + subprocess workers) keeps each task PENDING for ``30 s x scale`` after
RunTask and answers every AWS request 30 ms late (``FargateEmulator(cold_start=, latency=)``).
Three runs, each bound as in the scheduling issue:

* ``even``: ``calls`` calls of ``2 s x scale`` on ``workers`` workers finish within 1.1x of
  cold start + work / workers;
* ``straggler``: the same with the first task slowed 5x (its calls sleep five times longer)
  finish within 1.25x;
* ``requests``: a 10,000-item map of trivial calls makes at most 0.01 S3+ECS requests per
  item (client and workers).

``--scale 1`` is the issue's setting (30 s cold start, 2 s calls); the default 0.1 keeps the
ratios in a minute.  Exits 1 when a bound is not met.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fargate_requests import REGION, _setup, square  # noqa: E402

from starburst_executor import FargateExecutor  # noqa: E402
from starburst_executor.testing import FargateEmulator, MotoServer  # noqa: E402

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/w:bench"
BOUNDS = {"even": 1.1, "straggler": 1.25}
REQUESTS_PER_ITEM = 0.01


def work(seconds: float, slow_worker: str) -> float:
    """Sleep ``seconds``, five times longer on ``slow_worker`` (an injected straggler)."""
    slow = os.environ.get("STARBURST_WORKER_ID") == slow_worker
    time.sleep(seconds * (5 if slow else 1))
    return seconds


def _executor(bucket: str, cluster: str, workers: int) -> FargateExecutor:
    return FargateExecutor(max_workers=workers, backend="fargate", region=REGION, bucket=bucket,
                           cluster=cluster, image=IMAGE, cpu=0.25, memory=512)


def run(scale: float, workers: int, calls: int, items: int) -> dict[str, object]:
    cold, seconds = 30.0 * scale, 2.0 * scale
    report: dict[str, object] = {"scale": scale, "cold_start": cold, "call_seconds": seconds,
                                 "workers": workers, "calls": calls}
    with MotoServer() as moto, \
            FargateEmulator(moto, cold_start=cold, latency=0.03) as fargate, \
            fargate.patched_environ():
        for name in list(os.environ):
            if name.startswith("STARBURST_"):
                del os.environ[name]
        os.environ["STARBURST_CONFIG"] = os.devnull + ".none"
        bucket, cluster = _setup(moto)
        ideal = cold + calls * seconds / workers
        for name, slow in (("even", ""), ("straggler", "w00000")):
            started, wall = time.monotonic(), time.time()
            with _executor(bucket, cluster, workers) as ex:
                futures = [ex.submit(work, seconds, slow) for _ in range(calls)]
                assert [f.result() for f in futures] == [seconds] * calls
            elapsed = time.monotonic() - started
            # When each worker ran its first call: the modelled cold start plus the time a
            # worker process takes to boot here (many on a small machine are slower than one).
            first: dict[str, float] = {}
            for f in futures:
                meta = f.metadata
                if meta.worker_id and meta.started_at is not None:
                    first[meta.worker_id] = min(first.get(meta.worker_id, meta.started_at),
                                                meta.started_at)
            boots = sorted(t - wall for t in first.values())
            # Finishing together from those boots: sum over workers of (end - boot) = work.
            booted_ideal = (calls * seconds + sum(boots)) / len(boots) if boots else ideal
            report[name] = {"seconds": round(elapsed, 2), "ideal": round(ideal, 2),
                            "ratio": round(elapsed / ideal, 3),
                            "boots": [round(boots[0], 2), round(boots[-1], 2)] if boots else [],
                            "ideal_from_boots": round(booted_ideal, 2),
                            "ratio_from_boots": round(elapsed / booted_ideal, 3),
                            "batches": ex.usage().batches, "reruns": ex.usage().reruns}
            fargate.wait_stopped(60)
        fargate.proxy.reset_counts()
        started = time.monotonic()
        with _executor(bucket, cluster, workers) as ex:
            assert sum(ex.map(square, range(items))) == sum(i * i for i in range(items))
        s3_ecs = sum(n for (s, _), n in fargate.proxy.requests.items() if s in ("s3", "ecs"))
        report["requests"] = {"items": items, "seconds": round(time.monotonic() - started, 2),
                              "s3_ecs": s3_ecs, "per_item": round(s3_ecs / items, 5),
                              "batches": ex.usage().batches}
        fargate.wait_stopped(60)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.scale, args.workers, args.calls, args.items)
    ok = {name: report[name]["ratio"] <= bound  # type: ignore[index]
          for name, bound in BOUNDS.items()}
    ok["requests"] = report["requests"]["per_item"] <= REQUESTS_PER_ITEM  # type: ignore[index]
    if args.json:
        print(json.dumps({**report, "ok": ok}))
    else:
        print(f"cold start {report['cold_start']:g} s, calls of {report['call_seconds']:g} s, "
              f"{args.calls} calls on {args.workers} workers, 30 ms a request")
        for name, bound in BOUNDS.items():
            r = report[name]
            print(f"  {name:10s} {r['seconds']:7.2f} s  ideal {r['ideal']:.2f} s  ratio "  # type: ignore[index]
                  f"{r['ratio']:.3f} (bound {bound})  batches {r['batches']}  "  # type: ignore[index]
                  f"reruns {r['reruns']}  {'OK' if ok[name] else 'MISSED'}")  # type: ignore[index]
            print(f"  {'':10s} first calls {r['boots']} s after the map; from those boots "  # type: ignore[index]
                  f"ideal {r['ideal_from_boots']} s, ratio {r['ratio_from_boots']}")  # type: ignore[index]
        r = report["requests"]
        print(f"  requests   {r['items']} items: {r['s3_ecs']} S3+ECS requests, "  # type: ignore[index]
              f"{r['per_item']} per item (bound {REQUESTS_PER_ITEM}) "  # type: ignore[index]
              f"{'OK' if ok['requests'] else 'MISSED'}")
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
