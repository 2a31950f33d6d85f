"""The executor contract suite, run against the stdlib executors (which proves the suite) and
against ``FargateExecutor(backend="local")`` (which is what it is for)."""

from __future__ import annotations

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
    bound_ahead = 0

    @pytest.fixture
    def make_executor(self) -> Callable[[int], Executor]:
        return lambda max_workers: ThreadPoolExecutor(max_workers=max_workers)


class TestProcessPoolExecutor(ExecutorContract, ProcessContract):
    @pytest.fixture
    def make_executor(self) -> Callable[[int], Executor]:
        return lambda max_workers: ProcessPoolExecutor(max_workers=max_workers)


class TestFargateExecutorLocal(ExecutorContract, ProcessContract, RemoteCallablesContract):
    bound_ahead = 0  # a queued batch is revoked unless its worker has started it

    @pytest.fixture
    def make_executor(self) -> Callable[..., Executor]:
        def make(max_workers: int, **settings: Any) -> Executor:
            return FargateExecutor(max_workers=max_workers, backend="local", **settings)

        return make
