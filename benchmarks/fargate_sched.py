"""Scheduling on the emulated Fargate, with a modelled cold start and store latency.

    python benchmarks/fargate_sched.py [--scale 0.1] [--workers 20] [--calls 200] [--json]

The emulator (moto + subprocess workers) keeps each task PENDING for ``30 s x scale`` after
RunTask and answers every AWS request 30 ms late (``FargateEmulator(cold_start=, latency=)``).
What is modelled, not measured: each task's worker process starts at RunTask and boots during
the cold start, its AWS requests held until the task is RUNNING plus ``BOOT`` (1 s: a worker's
boot on one free core here takes 0.6-0.9 s), since twenty workers booting at once on this
machine's two cores take 7-12 s that Fargate tasks, each with its own vCPU, do not
(``boot_during_cold_start=True, boot=BOOT``); tasks have 1 vCPU.  Requests are counted by the
proxy, per task by the access key each task signs with.
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
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fargate_requests import REGION, _setup, square  # noqa: E402

from starburst_executor import FargateExecutor  # noqa: E402
from starburst_executor.testing import FargateEmulator, MotoServer  # noqa: E402

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/w:bench"
BOUNDS = {"even": 1.1, "straggler": 1.25}
REQUESTS_PER_ITEM = 0.01
BOOT = 1.0  # seconds from RUNNING to a worker's first request, on its own vCPU (see below)


def work(seconds: float, slow_worker: str) -> float:
    """Sleep ``seconds``, five times longer on ``slow_worker`` (an injected straggler)."""
    slow = os.environ.get("STARBURST_WORKER_ID") == slow_worker
    time.sleep(seconds * (5 if slow else 1))
    return seconds


def _executor(bucket: str, cluster: str, workers: int) -> FargateExecutor:
    return FargateExecutor(max_workers=workers, backend="fargate", region=REGION, bucket=bucket,
                           cluster=cluster, image=IMAGE, cpu=1, memory=2048)


def _requests(fargate: FargateEmulator) -> dict[str, object]:
    """S3+ECS requests by operation, all of them and the workers' (the proxy knows each task
    by the access key it signs with; the client's is the rest)."""
    def s3_ecs(counts: dict[tuple[str, str], int]) -> dict[str, int]:
        return {f"{s}.{o}": n for (s, o), n in sorted(counts.items()) if s in ("s3", "ecs")}

    total = s3_ecs(fargate.proxy.requests)
    workers: dict[str, int] = {}
    for task in fargate.tasks:
        for op, n in s3_ecs(fargate.task_requests(task)).items():
            workers[op] = workers.get(op, 0) + n
    return {"s3_ecs": sum(total.values()), "workers": sum(workers.values()),
            "by_operation": {k: [n, n - workers.get(k, 0)] for k, n in total.items()}}


def _timed(bucket: str, cluster: str, workers: int, calls: int, seconds: float,
           slow: str) -> tuple[float, list[float], int, int]:
    """One with-block of ``calls`` calls (in the child process): how long it took, when each
    worker ran its first call (seconds after the start), batches and re-runs."""
    started, wall = time.monotonic(), time.time()
    with _executor(bucket, cluster, workers) as ex:
        futures = [ex.submit(work, seconds, slow) for _ in range(calls)]
        assert [f.result() for f in futures] == [seconds] * calls
    elapsed = time.monotonic() - started
    first: dict[str, float] = {}
    for f in futures:
        meta = f.metadata
        if meta.worker_id and meta.started_at is not None:
            first[meta.worker_id] = min(first.get(meta.worker_id, meta.started_at),
                                        meta.started_at)
    usage = ex.usage()
    return elapsed, sorted(t - wall for t in first.values()), usage.batches, usage.reruns


def _mapped(bucket: str, cluster: str, workers: int, items: int) -> dict[str, object]:
    """A map of ``items`` trivial calls (in the child process)."""
    started = time.monotonic()
    with _executor(bucket, cluster, workers) as ex:
        assert sum(ex.map(square, range(items))) == sum(i * i for i in range(items))
    return {"seconds": round(time.monotonic() - started, 2), "batches": ex.usage().batches,
            "tasks": ex.usage().tasks_launched}


def run(scale: float, workers: int, calls: int, items: int) -> dict[str, object]:
    cold, seconds = 30.0 * scale, 2.0 * scale
    report: dict[str, object] = {"scale": scale, "cold_start": cold, "call_seconds": seconds,
                                 "workers": workers, "calls": calls}
    with MotoServer() as moto, \
            FargateEmulator(moto, cold_start=cold, latency=0.03, boot_during_cold_start=True,
                            boot=BOOT) as fargate, \
            fargate.patched_environ():
        for name in list(os.environ):
            if name.startswith("STARBURST_"):
                del os.environ[name]
        os.environ["STARBURST_CONFIG"] = os.devnull + ".none"
        bucket, cluster = _setup(moto)
        ideal = cold + calls * seconds / workers
        # The executor runs in a process of its own, as a user's program does: here, the
        # emulated AWS (moto, the proxy, the data plane: ~10 ms of CPU a request) would share
        # its interpreter lock and slow its every turn, which real S3 and ECS do not.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            for name, slow in (("even", ""), ("straggler", "w00000")):
                fargate.proxy.reset_counts()
                elapsed, boots, batches, reruns = child.submit(
                    _timed, bucket, cluster, workers, calls, seconds, slow).result()
                # Finishing together from those boots: sum over workers of (end - boot) = work.
                booted_ideal = (calls * seconds + sum(boots)) / len(boots) if boots else ideal
                report[name] = {"seconds": round(elapsed, 2), "ideal": round(ideal, 2),
                                "ratio": round(elapsed / ideal, 3),
                                "boots": [round(boots[0], 2), round(boots[-1], 2)] if boots
                                else [],
                                "ideal_from_boots": round(booted_ideal, 2),
                                "ratio_from_boots": round(elapsed / booted_ideal, 3),
                                "batches": batches, "reruns": reruns,
                                **_requests(fargate)}
                fargate.wait_stopped(60)
            fargate.proxy.reset_counts()
            mapped = child.submit(_mapped, bucket, cluster, workers, items).result()
        fargate.wait_stopped(60)
        counts = _requests(fargate)
        s3_ecs = int(counts["s3_ecs"])  # type: ignore[call-overload]
        report["requests"] = {"items": items, "per_item": round(s3_ecs / items, 5),
                              **mapped, **counts}
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
        print(f"modelled: each task's container boots during its cold start (20 boots on this "
              f"machine's cores would not fit in one vCPU each) and its first AWS request "
              f"leaves {BOOT:g} s after RUNNING (a worker's boot on one free core here: "
              f"0.6-0.9 s)")
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
        for name in (*BOUNDS, "requests"):
            r = report[name]
            print(f"  {name}: {r['s3_ecs']} S3+ECS requests, workers {r['workers']}, client "  # type: ignore[index]
                  f"{r['s3_ecs'] - r['workers']}; by operation (all / client):")  # type: ignore[index]
            for op, (n, c) in r["by_operation"].items():  # type: ignore[index]
                print(f"      {op:24s} {n:6d} {c:6d}")
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
