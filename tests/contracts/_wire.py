"""Write a batch and a worker's assignment into a store, as the engine does: for tests that run
a worker without an executor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starburst_executor import _auth, _keys, payload
from starburst_executor.storage import ObjectStore

SECRET = b"test-session-secret-0123456789ab"
"""The session secret of the objects these helpers write (a worker needs it in its env)."""

SECRET_ENV = {_auth.ENV_SECRET: _auth.secret_to_env(SECRET)}


def read_part(store: ObjectStore, key: str) -> payload.ResultPart:
    """The result part under ``key``, checked and unpickled as the client does."""
    part: payload.ResultPart = payload.ResultPart.decode(store.get(key), key=key, secret=SECRET)
    return part


def put_batch(store: ObjectStore, batch_id: str, fn: Callable[..., Any],
              calls: Sequence[tuple[int, tuple[Any, ...]]]) -> None:
    """Upload ``fn`` and a batch of ``fn(*args)`` calls, given as ``(item id, args)``."""
    pickled = payload.pickle_function(fn)
    digest = payload.function_digest(pickled)
    key = _keys.function_key(digest)
    store.put(key, payload.dump("function", pickled, key=key, secret=SECRET))
    encoded = tuple(payload.Call(i, 0, payload.pickle_args(i, args, {})) for i, args in calls)
    key = _keys.batch_key(batch_id)
    store.put(key, payload.Batch(batch_id, (digest,), encoded).encode(key=key, secret=SECRET))


def assign(store: ObjectStore, worker_id: str, seq: int, batch_id: str, *,
           skip: Sequence[int] = (), expected: float = 0.0) -> None:
    """Give ``worker_id`` its ``seq``-th assignment: attempt 1 of ``batch_id`` (expected to
    run ``expected`` seconds, if known)."""
    order = payload.Assignment(batch_id, 1, frozenset(skip), expected=expected)
    key = _keys.assign_key(worker_id, seq)
    store.put(key, order.encode(key=key, secret=SECRET))
