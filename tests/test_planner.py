from __future__ import annotations

from starburst_executor.planner import BatchPolicy, next_batch_size, split_by_bytes

POLICY = BatchPolicy(min_batch_seconds=1.0, max_batch_items=1000, balance=2)


def test_nothing_remaining() -> None:
    assert next_batch_size(0, 4, POLICY) == 0


def test_chunksize_wins() -> None:
    assert next_batch_size(100, 4, POLICY, chunksize=7) == 7
    assert next_batch_size(5, 4, POLICY, chunksize=7) == 5


def test_guided_self_scheduling_shrinks_as_work_runs_out() -> None:
    sizes, remaining = [], 800
    while remaining:
        size = next_batch_size(remaining, 4, POLICY)
        sizes.append(size)
        remaining -= size
    assert sizes[0] == 100
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 1
    assert sum(sizes) == 800


def test_quick_calls_go_in_few_batches() -> None:
    # 1 ms a call and batches worth at least 1 s: 1000 calls at once (the item bound).
    assert next_batch_size(5000, 4, POLICY, seconds_per_call=0.001) == 1000


def test_slow_calls_keep_balance() -> None:
    assert next_batch_size(100, 4, POLICY, seconds_per_call=10.0) == 13


def test_split_by_bytes() -> None:
    assert split_by_bytes([10, 10, 10], 25) == 2
    assert split_by_bytes([100, 10], 25) == 1  # an oversized call still travels alone
    assert split_by_bytes([1, 1], 25) == 2
