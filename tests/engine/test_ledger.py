from __future__ import annotations

from starburst_executor.engine import Ledger
from starburst_executor.errors import CostLimitExceeded
from starburst_executor._stats import RequestStats


def _price(seconds: float) -> float:
    return max(seconds, 60.0) * 0.001  # $0.06 a minute, one minute at least


def test_affordable_counts_the_minimum_of_each_new_worker() -> None:
    ledger = Ledger(_price, max_cost=0.20)
    assert ledger.affordable(10, others_running=False) == (3, None)
    ledger.open_span("w1")
    ledger.open_span("w2")
    ledger.open_span("w3")
    fit, error = ledger.affordable(1, others_running=False)
    assert fit == 0 and isinstance(error, CostLimitExceeded)
    assert "max_cost=$0.20" in str(error)
    assert ledger.affordable(1, others_running=True) == (0, None)


def test_nothing_billed_means_no_limit() -> None:
    ledger = Ledger(None, max_cost=0.01)
    ledger.open_span("w1")
    assert ledger.affordable(5, others_running=False) == (5, None)
    assert ledger.billed()[1] is None
    assert ledger.over_limit(None) is None


def test_over_limit() -> None:
    ledger = Ledger(_price, max_cost=1.0)
    assert ledger.over_limit(0.5) is None
    error = ledger.over_limit(1.5)
    assert isinstance(error, CostLimitExceeded) and "$1.50 billed" in str(error)


def test_usage_names_requests_and_sums_spans() -> None:
    ledger = Ledger(_price, None, store_name="s3", launcher_name="ecs")
    ledger.open_span("w1")
    ledger.end_span("w1")
    ledger.end_span("w1", at=1e12)  # a span ends once
    ledger.batches, ledger.retries = 2, 1
    store, launcher = RequestStats(), RequestStats()
    store.count("put", 3)
    launcher.count("RunTask")
    launcher.count("sts.GetCallerIdentity")
    usage = ledger.usage(7, store, launcher)
    assert usage.requests == {"s3.put": 3, "ecs.RunTask": 1, "sts.GetCallerIdentity": 1}
    assert (usage.calls, usage.batches, usage.retries) == (7, 2, 1)
    assert usage.task_seconds < 5
    assert usage.cost is not None and abs(usage.cost - 0.06) < 1e-9
