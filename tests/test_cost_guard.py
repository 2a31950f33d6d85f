"""max_cost: the executor never launches or keeps running work beyond what the user allowed."""

from __future__ import annotations

import time
from concurrent.futures import wait
from typing import Any

import pytest

from starburst_executor import CostLimitExceeded, FargateExecutor
from starburst_executor import executor as executor_module


def _half_a_dollar_a_second(config: Any) -> Any:
    return lambda seconds: 0.5 * max(seconds, 1.0)


def test_max_cost_caps_launches_and_stops_running_work(mocker: Any) -> None:
    # The local backend bills nothing; price it as if it did, to drive the guard.
    mocker.patch.object(executor_module, "_price_function", _half_a_dollar_a_second)
    started = time.monotonic()
    with FargateExecutor(max_workers=4, backend="local", max_cost=1.2) as ex:
        futures = [ex.submit(time.sleep, 0.2) for _ in range(40)]
        done, not_done = wait(futures, timeout=60)
        usage = ex.usage()
    assert not not_done
    assert time.monotonic() - started < 30
    assert usage.tasks_launched == 2  # $1.20 affords two workers' minimum of $0.50
    errors = [f.exception() for f in futures if f.exception() is not None]
    assert errors and all(isinstance(e, CostLimitExceeded) for e in errors)
    assert "max_cost=$1.20" in str(errors[0])
    assert usage.cost is not None and usage.cost >= 1.2


def test_no_worker_affordable_fails_at_once(mocker: Any) -> None:
    mocker.patch.object(executor_module, "_price_function", _half_a_dollar_a_second)
    with FargateExecutor(max_workers=2, backend="local", max_cost=0.1) as ex:
        future = ex.submit(abs, -1)
        with pytest.raises(CostLimitExceeded, match="would exceed max_cost"):
            future.result(timeout=30)
        assert ex.usage().tasks_launched == 0


def test_local_backend_reports_no_cost() -> None:
    with FargateExecutor(max_workers=1, backend="local") as ex:
        assert ex.submit(abs, -2).result(timeout=60) == 2
    assert ex.usage().cost is None
    assert ex.usage().task_seconds > 0
