"""StopTask with retries: a transient failure (throttling, 5xx, no connection) is tried again
with backoff, within a bounded time; the tasks that still could not be stopped are returned, with
their last error, for the launcher to report.

::

    round 1: StopTask each task --> stopped / already gone (done) | transient (again) | other (give up)
    pause 0.5 s, 1 s, 2 s (+-20%) ... while rounds and the deadline allow --> round 2, 3, 4
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import botocore.exceptions

from ... import _aws

__all__ = ["stop_tasks", "STOP_ROUNDS", "STOP_BACKOFF", "STOP_DEADLINE"]

STOP_ROUNDS = 4
"""Rounds of StopTask calls (each already retried by botocore) before a task is given up."""
STOP_BACKOFF = 0.5
"""Seconds before the second round, doubled for each later one."""
STOP_DEADLINE = 20.0
"""No round starts later than this many seconds after the first: a stop never waits longer."""


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
        for task_id in pending:
            try:
                stop_one(task_id)
            except Exception as exc:
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
