"""Shutdown corner cases specific to FargateExecutor."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

from starburst_executor import FargateExecutor


def test_cancel_futures_runs_callbacks_outside_the_lock() -> None:
    # A done-callback of a cancelled future that submits must get RuntimeError, not deadlock.
    ex = FargateExecutor(max_workers=1, backend="local")
    seen: list[BaseException] = []

    def resubmit(future: Future[Any]) -> None:
        try:
            ex.submit(abs, -1)
        except RuntimeError as exc:
            seen.append(exc)

    ex.submit(time.sleep, 0.5)
    futures = [ex.submit(abs, -x) for x in range(20)]
    for future in futures:
        future.add_done_callback(resubmit)
    done = threading.Event()

    def shut() -> None:
        ex.shutdown(wait=True, cancel_futures=True)
        done.set()

    threading.Thread(target=shut, daemon=True).start()
    assert done.wait(60), "shutdown(cancel_futures=True) deadlocked"
    cancelled = [f for f in futures if f.cancelled()]
    assert cancelled
    assert len(seen) >= len(cancelled)
    assert all("after shutdown" in str(e) for e in seen)


def test_shutdown_without_submit_starts_nothing() -> None:
    ex = FargateExecutor(max_workers=2, backend="local")
    ex.shutdown()
    assert ex.usage().tasks_launched == 0


def test_executor_dropped_without_shutdown_finishes_its_work() -> None:
    ex = FargateExecutor(max_workers=1, backend="local")
    future = ex.submit(pow, 3, 3)
    del ex
    assert future.result(timeout=60) == 27
