"""Peak memory of one large result and one large argument, client and worker, on the local backend.

    python benchmarks/memory.py [--mib 200] [--kinds bytes,bytearray]

Each scenario runs in a fresh interpreter.  The client's peak is its ``VmHWM`` (reset with
``/proc/self/clear_refs`` once the executor and its worker are warm), the worker's is read by
the worker itself in a later call on the same warm worker (``max_workers=1``), its high-water
mark reset by an earlier one.  Reported: each peak above the process's resident size before
the big call, divided by the payload's size (1.0 = the payload itself, nothing more).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

MiB = 2**20


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> int:
    """Reset this process's high-water mark; return its resident size now (bytes)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def peak() -> int:
    return _status("VmHWM")


def make_value(kind: str, size: int) -> Any:
    if kind == "bytes":
        return b"x" * size
    if kind == "bytearray":
        return bytearray(b"x") * size
    raise ValueError(kind)


def big_result(kind: str, size: int) -> Any:
    return make_value(kind, size)


def big_argument(data: Any) -> int:
    return len(data)


def run_one(scenario: str, kind: str, size: int) -> dict[str, Any]:
    from starburst_executor import FargateExecutor

    out: dict[str, Any] = {"scenario": scenario, "kind": kind, "mib": size / MiB}
    with FargateExecutor(max_workers=1, backend="local", forward_output=False) as ex:
        worker_base = ex.submit(reset_peak).result()
        client_base = reset_peak()
        if scenario == "result":
            value = ex.submit(big_result, kind, size).result()
            assert len(value) == size
        else:
            value = make_value(kind, size)
            assert ex.submit(big_argument, value).result() == size
        client_peak = peak()
        del value
        worker_peak = ex.submit(peak).result()
    out["client"] = (client_peak - client_base) / size
    out["worker"] = (worker_peak - worker_base) / size
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--kinds", default="bytes,bytearray")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.mib * MiB
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], size)))
        return 0
    print(f"{'scenario':<10}{'kind':<11}{'MiB':>6}{'client/size':>13}{'worker/size':>13}")
    for scenario in ("result", "argument"):
        for kind in args.kinds.split(","):
            proc = subprocess.run(
                [sys.executable, __file__, "--mib", str(args.mib), "--one", scenario, kind],
                capture_output=True, text=True, timeout=600,
            )
            if proc.returncode:
                print(f"{scenario:<10}{kind:<11} failed:\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{scenario:<10}{kind:<11}{r['mib']:>6.0f}{r['client']:>13.2f}"
                  f"{r['worker']:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
