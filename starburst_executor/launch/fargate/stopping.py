"""StopTask with retries: a transient failure (throttling, 5xx, no connection) is tried again
with backoff, within a bounded time; a task that still could not be stopped is reported: a
warning naming it and what to do, ``stats.not_stopped`` (usage, and the ledger keeps billing it),
and a STOPPED state for the manager (``StopTaskFailed``), so that no wait on it lasts forever.

::

    round 1: StopTask each --> stopped or gone (done) | transient (again) | other (give up)
    pause 0.5 s, 1 s, 2 s (+-20%) ... while rounds and the deadline allow --> round 2, 3, 4

The calls of a round go out from a few threads (``STOP_THREADS``): a call's round trip does
not add to the pace the caller's ``stop_one`` keeps (ECS's rate limit).
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import botocore.exceptions

from ... import _aws
from ..._stats import RequestStats
from ..base import TaskHandle, TaskPhase, TaskState

__all__ = ["stop_tasks", "claim", "record", "given_up", "STOP_ROUNDS", "STOP_BACKOFF",
           "STOP_DEADLINE"]

STOP_ROUNDS = 4
"""Rounds of StopTask calls (each already retried by botocore) before a task is given up."""
STOP_BACKOFF = 0.5
"""Seconds before the second round, doubled for each later one."""
STOP_DEADLINE = 20.0
"""No round starts later than this many seconds after the first: a stop never waits longer."""
STOP_THREADS = 20
"""StopTask calls in flight at once (as many as ECS takes in a burst: one wave for 20 tasks)."""


def _already_gone(exc: BaseException) -> bool:
    """ECS no longer knows the task (or its cluster): there is nothing left to stop."""
    code = _aws.error_code(exc)
    if code == "ClusterNotFoundException":
        return True
    text = str(exc).lower()
    return code == "InvalidParameterException" and "not found" in text


def _worth_retrying(exc: BaseException) -> bool:
    return _aws.is_transient(exc) or isinstance(exc, botocore.exceptions.BotoCoreError)


def stop_tasks(
    stop_one: Callable[[str], object],
    task_ids: Sequence[str],
    *,
    rounds: int = STOP_ROUNDS,
    backoff: float = STOP_BACKOFF,
    deadline: float = STOP_DEADLINE,
    sleep: Callable[[float], object] = time.sleep,
) -> dict[str, BaseException]:
    """Call ``stop_one(task_id)`` for each task, again for those that failed transiently.

    Returns:
        The tasks that could not be stopped, with the last error of each (empty: all stopped).
    """
    failed: dict[str, BaseException] = {}
    pending = list(task_ids)
    end = time.monotonic() + deadline
    delay = backoff
    for round_number in range(1, rounds + 1):
        again = []
        attempt = _attempt(stop_one)
        try:
            with ThreadPoolExecutor(min(STOP_THREADS, len(pending)),
                                    thread_name_prefix="starburst-stop") as pool:
                errors = list(pool.map(attempt, pending))
        except RuntimeError:  # at interpreter exit (atexit) no thread may start: one by one
            errors = [attempt(task_id) for task_id in pending]
        for task_id, exc in zip(pending, errors):
            if exc is not None:
                if _already_gone(exc):
                    failed.pop(task_id, None)
                    continue
                failed[task_id] = exc
                if _worth_retrying(exc):
                    again.append(task_id)
            else:
                failed.pop(task_id, None)
        pending = again
        if not pending or round_number == rounds or time.monotonic() + delay > end:
            break
        sleep(delay * random.uniform(0.8, 1.2))
        delay *= 2
    return failed


def _attempt(stop_one: Callable[[str], object]) -> Callable[[str], Exception | None]:
    def attempt(task_id: str) -> Exception | None:
        try:
            stop_one(task_id)
        except Exception as exc:
            return exc
        return None

    return attempt


def claim(tasks: Mapping[str, Any], handles: Sequence[TaskHandle], again: bool
          ) -> list[TaskHandle]:
    """The handles to call StopTask for, each marked as being stopped: not those stopped or
    being stopped, except (``again``) those a stop failed for.  ``tasks``: the launcher's
    records by task id (``state``, ``stop_requested``, ``stop_error``); the caller locks."""
    todo = []
    for handle in handles:
        task = tasks.get(handle.task_id)
        if task is not None and (task.state.phase is TaskPhase.STOPPED or (
                task.stop_requested and not (again and task.stop_error))):
            continue
        if task is not None:
            task.stop_requested = True
        todo.append(handle)
    return todo


def record(tasks: Mapping[str, Any], stats: RequestStats, handles: Sequence[TaskHandle],
           failed: Mapping[str, BaseException], cluster: str) -> list[str]:
    """Record how the stops of ``handles`` ended; return a warning for each task left running
    (it bills until it stops).  The caller locks."""
    warnings = []
    for handle in handles:
        task = tasks.get(handle.task_id)
        error = failed.get(handle.task_id)
        if error is None:
            stats.not_stopped.pop(handle.worker_id, None)
            if task is not None:
                task.stop_error = None
            continue
        stats.not_stopped[handle.worker_id] = handle.task_id
        message = (
            f"could not stop Fargate task {handle.task_id} (worker {handle.worker_id}) in "
            f"cluster {cluster}: {_aws.error_code(error) or type(error).__name__}: {error}. "
            "It may still be running and billing: stop it with `starburst cleanup` (or `aws "
            "ecs stop-task`, or in the ECS console); a worker with no work also exits by "
            "itself after idle_timeout")
        if task is not None:
            task.stop_error = message
        warnings.append(message)
    return warnings


def given_up(handle: TaskHandle, why: str) -> TaskState:
    """What the manager is told of a task a stop failed for: stopped, with why (it moves on;
    ``stats.not_stopped`` keeps it billed)."""
    return TaskState(handle, TaskPhase.STOPPED, stop_code="StopTaskFailed", stopped_reason=why)
