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
    test_max_workers_calls_run_at_the_same_time = _known_bug(
        ExecutorContract.test_max_workers_calls_run_at_the_same_time,
        "_manager._dispatch gives a busy, cold worker a second batch before _launch_workers "
        "starts a free one: the second call queues behind the first")
    test_unpicklable_function_names_the_function = _known_bug(
        RemoteCallablesContract.test_unpicklable_function_names_the_function,
        "_manager._pickle_and_upload divides by len(calls) == 0 when every call of a batch "
        "has an unpicklable function: ZeroDivisionError breaks the executor")
    test_local_modules_imported_one_after_another = _known_bug(
        RemoteCallablesContract.test_local_modules_imported_one_after_another,
        "payload.register_local_modules skips its scan when len(sys.modules) is unchanged, "
        "so a module imported after another was removed is pickled by reference")
    test_results_are_sent_as_calls_finish_not_after_the_batch = _known_bug(
        RemoteCallablesContract.test_results_are_sent_as_calls_finish_not_after_the_batch,
        "worker._PartWriter flushes only when a record is added: a finished result waits "
        "behind a long call of the same batch")
