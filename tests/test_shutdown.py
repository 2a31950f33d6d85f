"""Shutdown corner cases specific to FargateExecutor."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from starburst_executor import FargateExecutor


def _wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.01)


def test_cancel_futures_runs_callbacks_outside_the_lock(tmp_path: Path) -> None:
    # A done-callback of a cancelled future that submits must get RuntimeError, not deadlock.
    ex = FargateExecutor(max_workers=1, backend="local")
    seen: list[BaseException] = []

    def resubmit(future: Future[Any]) -> None:
        try:
            ex.submit(abs, -1)
        except RuntimeError as exc:
            seen.append(exc)

    gate = str(tmp_path / "gate")
    ex.submit(_wait_for, gate)  # holds the one worker until the calls behind it are settled
    futures = [ex.submit(abs, -x) for x in range(20)]
    for future in futures:
        future.add_done_callback(resubmit)
    done = threading.Event()

    def shut() -> None:
        ex.shutdown(wait=True, cancel_futures=True)
        done.set()

    threading.Thread(target=shut, daemon=True).start()
    deadline = time.monotonic() + 60
    while not all(f.done() for f in futures):
        assert time.monotonic() < deadline, "shutdown(cancel_futures=True) settled nothing"
        time.sleep(0.01)
    open(gate, "w").close()
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
