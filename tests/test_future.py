"""_future: the stdlib Future's promises, with cancel() routed through the call's batch."""

from __future__ import annotations

from typing import Any

from starburst_executor._future import CallMetadata, StarburstFuture


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
