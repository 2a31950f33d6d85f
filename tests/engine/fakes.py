"""Small fakes for the engine's unit tests: an intake filled with calls, a scripted launcher."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from starburst_executor._future import CallMetadata, StarburstFuture
from starburst_executor._stats import RequestStats
from starburst_executor.engine import Intake, WorkItem
from starburst_executor.launch.base import (
    LaunchFailure,
    TaskHandle,
    TaskPhase,
    TaskState,
    WorkerSpec,
)
from starburst_executor.storage.memory import MemoryStore

_names = itertools.count()

SECRET = b"engine-test-secret-0123456789abc"


def memory_store() -> MemoryStore:
    return MemoryStore(f"engine-test-{next(_names)}")


def remote_memory_store() -> MemoryStore:
    """A memory store that passes for a remote one (its URL is an S3 one): round trips to it
    go side by side (``engine.fanout``)."""
    store = memory_store()
    store.url = f"s3://engine-test/{store.url.rsplit('/', 1)[-1]}"
    return store


def intake_with(fn: Callable[..., Any], arg_tuples: Sequence[tuple[Any, ...]],
                chunksize: int | None = None) -> tuple[Intake, list[StarburstFuture[Any]]]:
    """An intake whose pending queue holds ``fn(*args)`` for each of ``arg_tuples``."""
    intake = Intake(None)
    futures: list[StarburstFuture[Any]] = []
    for item_id, args in enumerate(arg_tuples):
        future: StarburstFuture[Any] = StarburstFuture(CallMetadata(item_id, 0.0))
        intake.pending.append(WorkItem(item_id, future, fn, args, {}, chunksize))
        futures.append(future)
    intake.next_id = len(arg_tuples)
    return intake, futures


class ScriptedLauncher:
    """A launcher whose launches succeed or fail as told; workers never run anything."""

    poll_interval = (0.01, 0.1)

    def __init__(self, failures: Sequence[LaunchFailure | None] = ()) -> None:
        self.stats = RequestStats()
        self._failures = list(failures)
        self.started: list[WorkerSpec] = []
        self.stopped: list[tuple[TaskHandle, str]] = []

    def launch(self, specs: Sequence[WorkerSpec]) -> list[TaskHandle | LaunchFailure]:
        out: list[TaskHandle | LaunchFailure] = []
        for spec in specs:
            failure = self._failures.pop(0) if self._failures else None
            if failure is None:
                self.started.append(spec)
                self.stats.tasks_started += 1
                out.append(TaskHandle(spec.worker_id, f"task-{spec.worker_id}"))
            else:
                out.append(LaunchFailure(spec.worker_id, failure.reason, failure.retryable))
        return out

    def poll(self, handles: Sequence[TaskHandle]) -> list[TaskState]:
        return [TaskState(h, TaskPhase.RUNNING) for h in handles]

    def stop(self, handles: Sequence[TaskHandle], reason: str) -> None:
        self.stopped.extend((h, reason) for h in handles)

    def prepare(self) -> None:
        pass  # nothing to look up

    def capacity(self, wanted: int) -> int:
        return wanted

    def log_tail(self, handle: TaskHandle, lines: int = 20) -> str:
        return ""

    def close(self) -> None:
        pass
