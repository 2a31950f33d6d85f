from __future__ import annotations

import pytest

from starburst_executor.planner import (
    BatchPolicy,
    Estimates,
    even_shares,
    is_straggler,
    next_batch_size,
    smoothed,
    split_by_bytes,
)

POLICY = BatchPolicy(overhead_seconds=0.05, max_overhead=0.05, max_batch_items=1000)


def test_nothing_remaining() -> None:
    assert next_batch_size(0, 4, POLICY) == 0


def test_chunksize_is_exact() -> None:
    assert next_batch_size(100, 4, POLICY, chunksize=7) == 7
    assert next_batch_size(100, 4, POLICY, chunksize=7, seconds_per_call=1e-6) == 7
    assert next_batch_size(5, 4, POLICY, chunksize=7) == 5


def test_a_function_without_a_duration_travels_alone() -> None:
    assert next_batch_size(10_000, 2, POLICY) == 1


def test_overhead_stays_under_its_share_of_the_work() -> None:
    # 0.05 s overhead at most 5% of the work: 1 s of work, i.e. 10 calls of 0.1 s.
    assert next_batch_size(1000, 4, POLICY, seconds_per_call=0.1) == 10
    assert next_batch_size(1000, 4, POLICY, seconds_per_call=0.1, overhead=0.005) == 1
    assert next_batch_size(1000, 4, POLICY, seconds_per_call=10.0) == 1


def test_never_more_than_a_fair_share_of_what_remains() -> None:
    # 10 ms calls, 50 ms overhead: worth 100 calls a batch, but 4 workers share 200 calls.
    assert next_batch_size(200, 4, POLICY, seconds_per_call=0.01) == 50
    assert next_batch_size(5000, 4, POLICY, seconds_per_call=0.01) == 100
    sizes, remaining = [], 800
    while remaining:
        size = next_batch_size(remaining, 4, POLICY, seconds_per_call=0.01)
        sizes.append(size)
        remaining -= size
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 800
    assert min(sizes) >= 5  # never shorter than its overhead (50 ms of 10 ms calls)


def test_trivial_calls_are_not_split_below_their_overhead() -> None:
    # 1 us calls: all of 800 is less work than one batch's overhead, so one batch takes it.
    assert next_batch_size(800, 4, POLICY, seconds_per_call=1e-6) == 800
    assert next_batch_size(5000, 4, POLICY, seconds_per_call=1e-6) == 1000  # the item bound


def test_no_batch_is_shorter_than_a_hand_off_to_an_idle_worker() -> None:
    # 1 ms calls: a fair share of 10,000 on 20 workers (500 calls, 0.5 s) is shorter than the
    # 2 s it takes to hand a batch to an idle worker: 2,000 calls a batch, five workers.
    assert next_batch_size(10_000, 20, POLICY, seconds_per_call=0.001) == 500
    policy = BatchPolicy(overhead_seconds=0.05, max_batch_items=100_000)
    assert next_batch_size(10_000, 20, policy, seconds_per_call=0.001, handoff=2.0) == 2000
    # Calls of 2 s: a hand-off of 2 s changes nothing until the calls left are few.
    assert next_batch_size(180, 20, policy, seconds_per_call=2.0, handoff=2.0) == \
        next_batch_size(180, 20, policy, seconds_per_call=2.0)
    estimates = Estimates(0.05, handoff_seconds=1.0)
    for _ in range(30):
        estimates.observe_handoff(3.0)
    assert abs(estimates.handoff - 3.0) < 0.01 and estimates.overhead == 0.05


def test_estimates_are_per_function() -> None:
    estimates = Estimates(0.01)
    estimates.observe("quick", 0.0001)
    assert estimates.seconds_per_call("slow") is None
    estimates.observe("slow", 0.1)
    assert estimates.seconds_per_call("quick") == 0.0001
    assert estimates.seconds_per_call("slow") == 0.1
    estimates.observe("slow", 0.2)
    assert 0.1 < (estimates.seconds_per_call("slow") or 0) < 0.2


def test_many_calls_at_once_weigh_as_much_as_one_after_the_other() -> None:
    one_by_one, at_once = Estimates(0.01), Estimates(0.01)
    for estimates in (one_by_one, at_once):
        estimates.observe("f", 1.0)
    for _ in range(5):
        one_by_one.observe("f", 2.0)
    at_once.observe("f", 2.0, calls=5)
    assert at_once.seconds_per_call("f") == pytest.approx(one_by_one.seconds_per_call("f"))
    assert smoothed(1.0, 2.0) == pytest.approx(0.7 * 1.0 + 0.3 * 2.0)
    assert smoothed(1.0, 2.0, 0) == smoothed(1.0, 2.0, 1)  # at least one step


def test_overhead_is_measured_within_bounds() -> None:
    estimates = Estimates(0.01)
    for _ in range(50):
        estimates.observe_overhead(0.02)
    assert abs(estimates.overhead - 0.02) < 0.001
    for _ in range(50):
        estimates.observe_overhead(1e9)
    assert estimates.overhead <= 1.0  # one absurd gap (a paused laptop) cannot run away


def test_straggler_needs_an_estimate_and_a_wide_margin() -> None:
    assert not is_straggler(100.0, None, 0.01, POLICY)
    assert not is_straggler(1.5, 1.0, 0.01, POLICY)
    assert not is_straggler(2.5, 1.0, 0.01, POLICY)  # within the margin of 1 s
    assert is_straggler(3.5, 1.0, 0.01, POLICY)
    # A large measured overhead (4 s) widens the margin only up to the estimate itself.
    assert not is_straggler(10.0, 4.0, 4.0, POLICY)
    assert is_straggler(12.5, 4.0, 4.0, POLICY)


def test_split_by_bytes() -> None:
    assert split_by_bytes([10, 10, 10], 25) == 2
    assert split_by_bytes([100, 10], 25) == 1  # an oversized call still travels alone
    assert split_by_bytes([1, 1], 25) == 2


def test_a_call_costs_at_least_its_own_transport() -> None:
    # A 0.1 us function on a local store (10 ms hand-off): planned as free, all 10,000 calls
    # would go to one worker; each call costs ~20 us beyond its function, so both share them.
    policy = BatchPolicy(overhead_seconds=0.01, max_batch_items=100_000)
    assert next_batch_size(10_000, 2, policy, seconds_per_call=1e-7, handoff=0.01) == 5000
    free = BatchPolicy(overhead_seconds=0.01, max_batch_items=100_000, min_call_seconds=0.0)
    assert next_batch_size(10_000, 2, free, seconds_per_call=1e-7, handoff=0.01) == 10_000


# -- even shares --------------------------------------------------------------------------

def test_even_shares_bring_every_worker_to_one_finishing_time() -> None:
    assert even_shares([0.0] * 4, [2.0] * 4, 36) == [9, 9, 9, 9]
    # Free in 0, 2 and 4 seconds, 2 s a call: 6 calls end all three at 6 s.
    assert even_shares([0.0, 2.0, 4.0], [2.0] * 3, 6) == [3, 2, 1]


def test_a_slow_worker_gets_a_share_in_proportion_to_its_speed() -> None:
    assert even_shares([0.0, 0.0], [10.0, 2.0], 12) == [2, 10]


def test_the_calls_left_by_rounding_go_where_they_end_soonest() -> None:
    shares = even_shares([0.1 * i for i in range(20)], [2.0] * 20, 25)
    assert sum(shares) == 25 and max(shares) == 2
    assert shares[:5] == [2] * 5 and shares[5:] == [1] * 15
    # A single call: to the worker free first, none to those holding their share already.
    assert even_shares([5.0, 0.5, 3.0], [2.0] * 3, 1) == [0, 1, 0]


def test_even_shares_of_nothing() -> None:
    assert even_shares([1.0, 2.0], [1.0, 1.0], 0) == [0, 0]
    assert even_shares([], [], 5) == []
