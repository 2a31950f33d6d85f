"""Write a batch and a worker's assignment into a store, as the engine does: for tests that run
a worker without an executor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starburst_executor import _keys, payload
from starburst_executor.storage import ObjectStore


def put_batch(store: ObjectStore, batch_id: str, fn: Callable[..., Any],
              calls: Sequence[tuple[int, tuple[Any, ...]]]) -> None:
    """Upload ``fn`` and a batch of ``fn(*args)`` calls, given as ``(item id, args)``."""
    pickled = payload.pickle_function(fn)
    digest = payload.function_digest(pickled)
    store.put(_keys.function_key(digest), payload.dump("function", pickled))
    encoded = tuple(payload.Call(i, 0, payload.pickle_args(i, args, {})) for i, args in calls)
    store.put(_keys.batch_key(batch_id), payload.Batch(batch_id, (digest,), encoded).encode())


def assign(store: ObjectStore, worker_id: str, seq: int, batch_id: str, *,
           skip: Sequence[int] = ()) -> None:
    """Give ``worker_id`` its ``seq``-th assignment: attempt 1 of ``batch_id``."""
    order = payload.Assignment(batch_id, 1, frozenset(skip))
    store.put(_keys.assign_key(worker_id, seq), order.encode())
