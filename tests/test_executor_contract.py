"""The executor contract suite, run against the stdlib executors (which proves the suite) and
against ``FargateExecutor(backend="local")`` (which is what it is for)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest

from starburst_executor import FargateExecutor

from .contracts.executor_contract import (
    ExecutorContract,
    ProcessContract,
    RemoteCallablesContract,
)


class TestThreadPoolExecutor(ExecutorContract):
    @pytest.fixture
    def make_executor(self) -> Callable[[int], Executor]:
        return lambda max_workers: ThreadPoolExecutor(max_workers=max_workers)


class TestProcessPoolExecutor(ExecutorContract, ProcessContract):
    @pytest.fixture
    def make_executor(self) -> Callable[[int], Executor]:
        return lambda max_workers: ProcessPoolExecutor(max_workers=max_workers)


def _known_bug(test: Callable[..., None], reason: str) -> Callable[..., None]:
    """The contract test ``test``, expected to fail on this executor until ``reason`` is fixed
    (strict: once it passes, the marker must go).  The mark goes on a copy: the contract's own
    function is shared with the stdlib executors' classes."""

    @functools.wraps(test)
    def copy(*args: Any, **kwargs: Any) -> None:
        test(*args, **kwargs)

    return pytest.mark.xfail(strict=True, reason=f"BUG: {reason}")(copy)


class TestFargateExecutorLocal(ExecutorContract, ProcessContract, RemoteCallablesContract):
    @pytest.fixture
    def make_executor(self) -> Callable[..., Executor]:
        def make(max_workers: int, **settings: Any) -> Executor:
            return FargateExecutor(max_workers=max_workers, backend="local", **settings)

        return make

    # Known library bugs, reported; each marker goes when its bug is fixed.
    test_a_busy_worker_does_not_hold_up_calls_a_free_worker_can_run = _known_bug(
        ExecutorContract.test_a_busy_worker_does_not_hold_up_calls_a_free_worker_can_run,
        "_manager._dispatch's _fill(depth=2) queues a second batch on a worker that is stuck "
        "in a long call; those calls wait for it while the other worker is idle")
