"""_future: the stdlib Future's promises, with cancel() routed through the call's batch."""

from __future__ import annotations

import threading
import time
from concurrent.futures import as_completed, wait
from typing import Any

from starburst_executor._future import CallMetadata, StarburstFuture, finish_all, start_all


def _future(item_id: int = 7) -> tuple[StarburstFuture[Any], list[int]]:
    future: StarburstFuture[Any] = StarburstFuture(CallMetadata(item_id, 0.0))
    asked: list[int] = []

    def withdraw(item: int, cancel: Any) -> bool:
        asked.append(item)
        return bool(cancel())

    future._withdraw = withdraw
    return future, asked


def test_cancel_of_a_pending_call_asks_its_batch_with_the_call_id() -> None:
    future, asked = _future(7)
    assert future.cancel() and future.cancelled() and future.cancelled_now()
    assert asked == [7]


def test_cancel_of_a_finished_call_is_false_without_asking_its_batch() -> None:
    future, asked = _future()
    future.set_result(1)
    assert not future.cancel() and not future.cancelled_now()
    assert asked == [] and future.result() == 1


def test_a_future_without_callbacks_settles_and_one_with_callbacks_runs_them() -> None:
    quiet, _ = _future()
    quiet.set_result(2)
    seen: list[Any] = []
    loud, _ = _future()
    loud.add_done_callback(lambda f: seen.append(f.result()))
    loud.set_result(3)
    assert quiet.result() == 2 and seen == [3]


def test_futures_sharing_a_lock_are_futures_like_any_other() -> None:
    plain: StarburstFuture[Any] = StarburstFuture(CallMetadata(1, 0.0))
    shared = threading.Condition()
    first = StarburstFuture.sharing(shared, CallMetadata(2, 0.0))
    second = StarburstFuture.sharing(shared, CallMetadata(3, 0.0))
    # The attributes Future.__init__ sets on this Python, no more and no fewer.
    assert set(vars(first)) == set(vars(plain))
    assert first._condition is second._condition is shared  # type: ignore[attr-defined]
    assert first._waiters is not second._waiters  # type: ignore[attr-defined]
    assert first.metadata.item_id == 2 and not first.done()

    seen: list[Any] = []
    waiter = threading.Thread(target=lambda: seen.append(second.result(timeout=10)))
    waiter.start()
    deadline = time.monotonic() + 10
    while not shared._waiters and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.001)  # until the waiter waits (the stdlib's wait would end at a wake-up)
    first.set_result("first")  # wakes the waiter: it must go on waiting for its own
    while waiter.is_alive() and not shared._waiters:  # type: ignore[attr-defined]
        time.sleep(0.001)  # until it waits again, or ended (TimeoutError) as it must not
    assert waiter.is_alive() and seen == []
    assert first.result() == "first" and not second.done()
    second.set_result("second")
    waiter.join(10)
    assert seen == ["second"]
    # wait() and as_completed() take each future's lock in turn: the same one, reentrant.
    assert set(as_completed([first, second], timeout=10)) == {first, second}
    assert not second.cancel() and not first.cancelled()


def test_many_started_and_finished_at_once_as_one_by_one() -> None:
    shared = threading.Condition()
    futures = [StarburstFuture.sharing(shared, CallMetadata(i, 0.0)) for i in range(4)]
    alone: StarburstFuture[Any] = StarburstFuture(CallMetadata(4, 0.0))  # a lock of its own
    every = [*futures, alone]
    assert futures[3].cancel()
    start_all(every)
    assert [f.running() for f in every] == [True, True, True, False, True]
    assert futures[3].cancelled()  # notified, as set_running_or_notify_cancel() does
    assert wait([futures[3]], timeout=0).done == {futures[3]}

    called: list[Any] = []
    futures[1].add_done_callback(lambda f: called.append(f.result()))
    waiting = as_completed(every, timeout=10)  # a waiter on each: told of each result
    assert next(waiting) is futures[3]  # cancelled: done before any result
    finish_all(every, ["a", "b", "c", "d", "e"])
    assert [f.result() for f in every if not f.cancelled()] == ["a", "b", "c", "e"]
    assert futures[3].cancelled() and called == ["b"]
    assert set(waiting) == {futures[0], futures[1], futures[2], alone}
    finish_all(every[:1], ["again"])  # done already: kept, as set_result() would refuse
    assert futures[0].result() == "a"
