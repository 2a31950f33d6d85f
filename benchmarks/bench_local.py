"""FargateExecutor(backend="local") against the stdlib executors, side by side.

    python benchmarks/bench_local.py [--workers 2] [--repeat 3] [--markdown]

The ``numpy`` and ``sklearn`` scenarios need numpy and scikit-learn (not dependencies of the
package: ``pip install numpy scikit-learn``); without them they are skipped with a message.

Each (executor, scenario) runs in a fresh interpreter, so start-up and peak memory (the
client's own and its children's, ``ru_maxrss``) are measured alone.  Every scenario but
"startup" is timed after one quick readiness call (``submit(noop, 1).result()``), as users
do: it must not make later, slower calls look cheap.  The best wall time of ``--repeat`` runs
is reported; the ratio columns compare against ProcessPoolExecutor.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable

EXECUTORS = ["starburst-local", "process", "thread"]


def noop(x: int) -> int:
    return x


def square(x: int) -> int:
    return x * x


def cpu_50ms(x: int) -> int:
    end = time.thread_time() + 0.05
    n = 0
    while time.thread_time() < end:
        n += 1
    return x


def sleep_100ms(x: int) -> int:
    time.sleep(0.1)
    return x


def nbytes(data: bytes) -> int:
    return len(data)


def matmuls(seed: int) -> float:
    import numpy as np

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((300, 300))
    b = rng.standard_normal((300, 300))
    for _ in range(10):
        b = np.linalg.solve(a + 300 * np.eye(300), a @ b)
    return float(np.abs(b).sum())


def cross_validate(seed: int) -> float:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, y = make_classification(n_samples=1000, n_features=40, random_state=seed)
    return float(cross_val_score(LogisticRegression(max_iter=500), X, y, cv=5).mean())


def make(kind: str, workers: int) -> Executor:
    if kind == "process":
        return ProcessPoolExecutor(max_workers=workers)
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=workers)
    from starburst_executor import FargateExecutor

    return FargateExecutor(max_workers=workers, backend="local")


def _trivial(ex: Executor, workers: int) -> None:
    assert sum(ex.map(square, range(10_000))) == 333283335000


def _trivial_tuned(ex: Executor, workers: int) -> None:
    chunk = 10_000 // (4 * workers)
    assert sum(ex.map(square, range(10_000), chunksize=chunk)) == 333283335000


def _cpu(ex: Executor, workers: int) -> None:
    assert list(ex.map(cpu_50ms, range(200))) == list(range(200))


def _big_args(ex: Executor, workers: int) -> None:
    blobs = [bytes([i]) * (10 * 1024 * 1024) for i in range(20)]
    assert list(ex.map(nbytes, blobs)) == [10 * 1024 * 1024] * 20


def _sleeps(ex: Executor, workers: int) -> None:
    assert list(ex.map(sleep_100ms, range(100))) == list(range(100))


def _cpu_tuned(ex: Executor, workers: int) -> None:
    chunk = 200 // (4 * workers)
    assert list(ex.map(cpu_50ms, range(200), chunksize=chunk)) == list(range(200))


def _break(ex: Executor, workers: int) -> float:
    for i, _ in enumerate(ex.map(cpu_50ms, range(400))):
        if i == 3:
            break
    return time.perf_counter()  # timed from here to the end of the with-block


def _numpy(ex: Executor, workers: int) -> None:
    assert len(list(ex.map(matmuls, range(40)))) == 40


def _sklearn(ex: Executor, workers: int) -> None:
    assert all(0.5 < score <= 1.0 for score in ex.map(cross_validate, range(40)))


def _startup(ex: Executor, workers: int) -> None:
    assert ex.submit(noop, 1).result() == 1


SCENARIOS: dict[str, tuple[str, Callable[[Executor, int], float | None]]] = {
    "trivial": ("10,000 trivial calls, map default chunksize", _trivial),
    "trivial-tuned": ("10,000 trivial calls, map chunksize=n/(4*workers)", _trivial_tuned),
    "cpu": ("200 calls of 50 ms CPU", _cpu),
    "cpu-tuned": ("200 calls of 50 ms CPU, map chunksize=n/(4*workers)", _cpu_tuned),
    "big-args": ("20 calls with 10 MB arguments", _big_args),
    "sleeps": ("100 calls sleeping 0.1 s", _sleeps),
    "break": ("break after 4 results of 400 x 50 ms: leaving the with-block", _break),
    "startup": ("startup: construct + first result of a no-op", _startup),
    "numpy": ("40 calls of 300x300 matmul + solve (BLAS threads)", _numpy),
    "sklearn": ("40 scikit-learn 5-fold cross-validations", _sklearn),
}
REQUIRES = {"numpy": ("numpy",), "sklearn": ("numpy", "sklearn")}


def _missing(scenario: str) -> list[str]:
    import importlib.util

    return [m for m in REQUIRES.get(scenario, ()) if importlib.util.find_spec(m) is None]


def run_one(kind: str, scenario: str, workers: int) -> dict[str, Any]:
    fn = SCENARIOS[scenario][1]
    started = time.perf_counter()
    with make(kind, workers) as ex:
        if scenario != "startup":
            assert ex.submit(noop, 1).result() == 1  # the readiness check users do
            started = time.perf_counter()
        broke_at = fn(ex, workers)
        wall = time.perf_counter() - started
    if broke_at is not None:
        wall = time.perf_counter() - broke_at
    return {
        "wall": wall,
        "rss_client_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def measure(kind: str, scenario: str, workers: int, repeat: int) -> dict[str, Any]:
    best: dict[str, Any] | None = None
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(here), os.environ.get("PYTHONPATH", "")]))
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--one", kind, scenario, "--workers", str(workers)],
            capture_output=True, text=True, timeout=600, env=env, cwd=here)
        if out.returncode != 0:
            raise SystemExit(f"{kind} {scenario} failed:\n{out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if best is None or result["wall"] < best["wall"]:
            best = result
    assert best is not None
    return best


TARGETS = {  # scenario -> (largest ratio to ProcessPoolExecutor, baseline scenario)
    "trivial": (0.1, "trivial"),
    "cpu-tuned": (1.05, "cpu-tuned"),
    "sleeps": (1.05, "sleeps"),
    "big-args": (1.5, "big-args"),
    "numpy": (1.3, "numpy"),
    "sklearn": (1.3, "sklearn"),
}
ABSOLUTE = {"startup": 0.5, "break": 0.5}  # scenario -> most seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--one", nargs=2, metavar=("EXECUTOR", "SCENARIO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.workers)))
        return 0
    scenarios = []
    for s in args.scenarios.split(","):
        missing = _missing(s)
        if missing:
            print(f"skipping {s}: needs {', '.join(missing)} (pip install numpy scikit-learn)")
        else:
            scenarios.append(s)
    results = {(k, s): measure(k, s, args.workers, args.repeat)
               for s in scenarios for k in EXECUTORS}
    rows = []
    failed = []
    for s in scenarios:
        ours = results[("starburst-local", s)]
        proc = results[("process", s)]
        thread = results[("thread", s)]
        ratio = ours["wall"] / proc["wall"]
        target = ""
        if s in TARGETS:
            limit, base = TARGETS[s]
            ratio_to_base = ours["wall"] / results[("process", base)]["wall"]
            ok = ratio_to_base <= limit
            target = f"<= {limit:.2f}x {'met' if ok else 'MISSED'}"
            if not ok:
                failed.append(s)
        if s in ABSOLUTE:
            ok = ours["wall"] < ABSOLUTE[s]
            target = f"< {ABSOLUTE[s]:g} s {'met' if ok else 'MISSED'}"
            if not ok:
                failed.append(s)
        rows.append((SCENARIOS[s][0], f"{ours['wall']:.3f}", f"{proc['wall']:.3f}",
                     f"{thread['wall']:.3f}", f"{ratio:.2f}x", target,
                     f"{ours['rss_client_mib']:.0f} / {ours['rss_children_mib']:.0f}",
                     f"{proc['rss_client_mib']:.0f} / {proc['rss_children_mib']:.0f}",
                     f"{thread['rss_client_mib']:.0f}"))
    header = ("scenario", "starburst local (s)", "ProcessPool (s)", "ThreadPool (s)",
              "ratio to ProcessPool", "target", "peak MiB starburst (client / worker)",
              "peak MiB ProcessPool (client / worker)", "peak MiB ThreadPool")
    print(f"max_workers={args.workers}, best of {args.repeat}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        for row in [header] + rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    if failed:
        print("targets missed:", ", ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
