from __future__ import annotations

import threading
from typing import Any

import pytest

from starburst_executor import _keys, payload
from starburst_executor._future import CallMetadata, StarburstFuture
from starburst_executor.engine.batches import Batcher
from starburst_executor.engine.intake import WorkItem
from starburst_executor.errors import SerializationError
from starburst_executor.planner import BatchPolicy

from .fakes import SECRET, intake_with, memory_store


class Counted:
    """An argument that counts how often it is pickled."""

    pickled = 0

    def __reduce__(self) -> tuple[Any, ...]:
        Counted.pickled += 1
        return (Counted, ())


def _takes(x: Any, blob: bytes = b"") -> Any:
    return x


def _batches(store: Any) -> list[payload.Batch]:
    return [payload.Batch.decode(store.get(k), key=k, secret=SECRET)
            for k in store.list("batches/")]


def test_each_call_is_pickled_once_even_when_batches_are_cut_by_size() -> None:
    Counted.pickled = 0
    intake, futures = intake_with(_takes, [(Counted(), b"x" * 400) for _ in range(12)],
                                  chunksize=5)
    store = memory_store()
    batcher = Batcher(intake, store, BatchPolicy(max_batch_bytes=1000), secret=SECRET)
    while batcher.form(workers=1) is not None:
        pass
    batches = _batches(store)
    assert len(batches) > 3  # the 1000-byte bound cut the work several times
    assert sorted(c.item_id for b in batches for c in b.calls) == list(range(12))
    assert Counted.pickled == 12
    # Batched is not bound: a call is RUNNING only once a worker claims its batch.
    assert not any(f.running() or f.done() for f in futures)


def test_a_function_is_uploaded_once_per_content_hash() -> None:
    intake, _ = intake_with(_takes, [(i,) for i in range(6)])
    store = memory_store()
    batcher = Batcher(intake, store, BatchPolicy(), secret=SECRET)
    while batcher.form(workers=3) is not None:
        pass
    batches = len(_batches(store))
    assert batches > 1
    assert len(store.list("functions/")) == 1
    assert store.stats.requests["put"] == batches + 1


def test_an_argument_that_cannot_be_pickled_fails_its_call_only() -> None:
    intake, futures = intake_with(_takes, [(1,), (threading.Lock(),), (3,)], chunksize=3)
    store = memory_store()
    batch = Batcher(intake, store, BatchPolicy(), secret=SECRET).form(workers=1)
    assert batch is not None and sorted(batch.futures) == [0, 2]
    with pytest.raises(SerializationError, match=r"call 1 could not be sent: args\[0\]"):
        futures[1].result(0)
    (sent,) = _batches(store)
    assert [c.arguments() for c in sent.calls] == [((1,), {}), ((3,), {})]


def test_a_function_that_cannot_be_pickled_fails_its_calls() -> None:
    lock = threading.Lock()
    intake, futures = intake_with(lambda: lock, [(), ()])
    store = memory_store()
    assert Batcher(intake, store, BatchPolicy(), secret=SECRET).form(workers=1) is None
    for future in futures:
        with pytest.raises(SerializationError, match="could not be pickled"):
            future.result(0)
    assert store.list(_keys.batch_key("")) == []


def test_cancelled_calls_are_skipped() -> None:
    intake, futures = intake_with(_takes, [(1,), (2,)], chunksize=2)
    futures[0].cancel()
    batch = Batcher(intake, memory_store(), BatchPolicy(), secret=SECRET).form(workers=1)
    assert batch is not None and list(batch.futures) == [1]


def test_a_function_is_uploaded_again_before_the_bucket_could_expire_it() -> None:
    from starburst_executor.engine.batches import FUNCTION_REFRESH_SECONDS

    now = [1000.0]
    intake, _ = intake_with(_takes, [(i,) for i in range(3)])
    for item in intake.pending:
        item.chunksize = 1  # one call a batch
    store = memory_store()
    batcher = Batcher(intake, store, BatchPolicy(), secret=SECRET, clock=lambda: now[0])
    uploaded = []
    for later in (0.0, FUNCTION_REFRESH_SECONDS - 1, 2.0):  # first, still recent, then old
        now[0] += later
        assert batcher.form(workers=1) is not None
        uploaded.append(bool(store.list("functions/")))
        store.delete_prefix("functions/")  # what the bucket's expiry rule does
    assert uploaded == [True, False, True]


def test_a_function_without_a_measured_duration_travels_alone() -> None:
    intake, _ = intake_with(_takes, [(i,) for i in range(6)])
    batcher = Batcher(intake, memory_store(), BatchPolicy(overhead_seconds=0.01), secret=SECRET)
    first = batcher.form(workers=2)
    assert first is not None and len(first.futures) == 1
    # Once its calls are measured (10 ms), the rest share out fairly between 2 workers.
    digest = first.digest
    batcher.observe(digest, 0.01)
    second = batcher.form(workers=2)
    assert second is not None and len(second.futures) == 3


def test_estimates_are_not_shared_across_functions() -> None:
    intake, _ = intake_with(_takes, [(i,) for i in range(4)])
    other, _ = intake_with(pow, [(i, 2) for i in range(4)])
    intake.pending.extend(other.pending)
    batcher = Batcher(intake, memory_store(), BatchPolicy(overhead_seconds=0.01), secret=SECRET)
    first = batcher.form(workers=1)
    assert first is not None
    batcher.observe(first.digest, 0.0001)  # _takes is quick; pow is not known yet
    quick = batcher.form(workers=1)
    assert quick is not None and sorted(quick.futures) == [1, 2, 3]
    unknown = batcher.form(workers=1)
    assert unknown is not None and len(unknown.futures) == 1


def test_a_small_batch_travels_inline_and_a_large_one_is_stored() -> None:
    """Under ``inline_max`` bytes a batch is not written: its object (signed for its own key)
    rides in each of its assignments; a larger one is stored as before."""
    intake, _ = intake_with(_takes, [(1,), (2, b"x" * 5000)], chunksize=1)
    store = memory_store()
    batcher = Batcher(intake, store, BatchPolicy(), secret=SECRET)
    batcher.inline_max = 2000
    small, large = batcher.form(workers=2), batcher.form(workers=2)
    assert small is not None and large is not None
    assert store.list("batches/") == [_keys.batch_key(large.batch_id)]
    assert large.body == b""
    key = _keys.batch_key(small.batch_id)
    order = payload.Assignment(small.batch_id, 1, batch=small.body)
    read = payload.Assignment.decode(order.encode(key="a/w/0", secret=SECRET), key="a/w/0",
                                     secret=SECRET)
    (call,) = payload.Batch.decode(read.batch, key=key, secret=SECRET).calls
    assert call.arguments() == ((1,), {})
    # Its function is small too: sent with a worker's first batch of it, as stored.
    function_key = _keys.function_key(small.digest)
    assert small.function == large.function == store.get(function_key)
    assert payload.load(small.function, "function", key=function_key, secret=SECRET)(3) == 3


def test_only_the_latest_small_functions_are_kept_to_travel_inline() -> None:
    functions = [eval(f"lambda: {i}") for i in range(20)]  # twenty distinct digests
    intake, _ = intake_with(functions[0], [])
    for item_id, fn in enumerate(functions):
        future: StarburstFuture[Any] = StarburstFuture(CallMetadata(item_id, 0.0))
        intake.pending.append(WorkItem(item_id, future, fn, (), {}, None))
    batcher = Batcher(intake, memory_store(), BatchPolicy(), secret=SECRET)
    batcher.inline_max = 64 * 1024
    batches = [batcher.form(workers=1) for _ in functions]
    assert all(b is not None and b.function for b in batches)
    assert len(batcher._small) == 16  # the first four are read from the store again
