"""The launcher seam: start workers, watch them, stop them.

A launcher knows nothing of batches or futures.  It starts a worker process (a subprocess, a
container, a Fargate task) with an environment of *keys only* (the store URL, the worker id,
timeouts), reports each worker's state, and stops workers.  The manager thread does the rest.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from .._stats import RequestStats
from ..config import Config

__all__ = [
    "Launcher",
    "WorkerSpec",
    "TaskHandle",
    "LaunchFailure",
    "TaskPhase",
    "TaskState",
    "WORKER_COMMAND",
]

WORKER_COMMAND = ("python", "-m", "starburst_executor.worker")
"""What a worker container runs (the image's Python)."""


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What to start: one worker with this id and environment (keys and settings, never data;
    and the session secret, ``_auth.ENV_SECRET``, which no launcher may log)."""

    worker_id: str
    env: Mapping[str, str] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class TaskHandle:
    """A started worker.  ``task_id`` is the launcher's own name for it (pid, container id, ARN)."""

    worker_id: str
    task_id: str


@dataclasses.dataclass(frozen=True)
class LaunchFailure:
    """A worker that could not be started.

    ``retryable`` is true for transient causes (capacity, throttling): the manager tries again
    later with backoff.  Otherwise its ``reason`` fails the work, so it must say what to do.
    """

    worker_id: str
    reason: str
    retryable: bool = True


class TaskPhase(enum.Enum):
    PENDING = "pending"  # accepted, not running yet (provisioning, pulling the image)
    RUNNING = "running"
    STOPPED = "stopped"


@dataclasses.dataclass(frozen=True)
class TaskState:
    """What a launcher knows of a worker.

    Attributes:
        handle: which worker.
        phase: pending, running or stopped.
        exit_code: the worker process's exit code once stopped (negative: killed by a signal).
        stop_code: the platform's stop code (ECS ``stopCode`` such as ``SpotInterruption``).
        stopped_reason: a human-readable reason for the stop, if the platform gives one.
        started_at: when the worker started running (``time.time()``), if known.
        stopped_at: when it stopped, if known.
        interrupted: true when the platform took the worker away (Spot interruption, host
            retirement): its lost work is retried without using up a retry.
    """

    handle: TaskHandle
    phase: TaskPhase
    exit_code: int | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    interrupted: bool = False


@runtime_checkable
class Launcher(Protocol):
    """Starts and watches workers.  Called from the manager thread only, except ``stop`` and
    ``close``, which may also be called from an ``atexit`` hook."""

    stats: RequestStats

    poll_interval: tuple[float, float]
    """(shortest, longest) pause between two polls of the manager; the manager backs off
    between them while nothing changes."""

    @classmethod
    def from_config(cls, config: Config, session_id: str, store_url: str) -> Launcher:
        """A launcher for ``config``, its settings validated, without any network call (the
        registry, :func:`starburst_executor.launch.open_backend`, builds launchers so).
        ``session_id`` labels or tags what it starts; ``store_url`` is the session's store."""

    def prepare(self) -> None:
        """Start, in the background, what the first launch needs (clients, lookups), so that
        it overlaps the client's own start; that launch waits for it and reports its errors.
        Called once, when the first work arrives."""

    def launch(self, specs: Sequence[WorkerSpec]) -> list[TaskHandle | LaunchFailure]:
        """Start one worker per spec; return, in order, a handle or a failure for each."""

    def poll(self, handles: Sequence[TaskHandle]) -> list[TaskState]:
        """Return the state of each handle, in order."""

    def stop(self, handles: Sequence[TaskHandle], reason: str) -> None:
        """Stop these workers now (idempotent; stopping a stopped worker is not an error)."""

    def capacity(self, wanted: int) -> int:
        """How many workers may run at once, at most ``wanted`` (``wanted`` unless a quota caps
        it; a capped launcher warns once, saying how to raise the cap).  Called before the
        first launch; the manager then runs the work in waves of that size."""

    def log_tail(self, handle: TaskHandle, lines: int = 20) -> str:
        """Return the last ``lines`` lines of the worker's log, or ``""`` if none can be had."""

    def close(self) -> None:
        """Stop every worker this launcher started that is still running; release resources."""
