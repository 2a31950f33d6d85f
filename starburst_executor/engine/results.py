"""Reading the workers' results: one LIST of ``results/`` per poll, each new part read once."""

from __future__ import annotations

from .. import _keys, payload
from ..errors import SerializationError, StarburstError, StoreError
from ..storage import ObjectStore

__all__ = ["ResultReader"]


class ResultReader:
    """Finds and reads the result parts written since the last look (manager thread only).

    ``secret`` is the session's: a part is unpickled only once its MAC for its key checks out.
    """

    def __init__(self, store: ObjectStore, *, secret: bytes) -> None:
        self._store = store
        self._secret = secret
        self._seen: set[str] = set()

    def look(self, oldest_batch: str) -> list[str]:
        """The keys of the parts not seen before, of batches ``oldest_batch`` and later."""
        # Batch ids grow, so every part of an unfinished batch sorts after this key.
        start = _keys.RESULTS_PREFIX + oldest_batch
        keys = self._store.list(_keys.RESULTS_PREFIX, start_after=start)
        fresh = [k for k in keys if k not in self._seen]
        self._seen.update(fresh)
        if len(self._seen) > 4 * len(keys) + 1000:
            self._seen.intersection_update(keys)
        return fresh

    def read(self, key: str) -> payload.ResultPart | StarburstError:
        """The part under ``key``, or the error that keeps it from being read.

        The error is an ``IntegrityError`` (not written there by this session), a
        ``StoreError`` (the GET failed after the store's own retries) or another
        ``SerializationError`` (e.g. a worker of another version wrote its refusal in its own
        format); it concerns this part's batch only, never the executor.
        """
        try:
            data = self._store.get(key)
        except StoreError as exc:
            return exc
        try:
            part = payload.load(data, "results", key=key, secret=self._secret)
        except SerializationError as exc:
            return exc
        except Exception as exc:  # authentic yet unreadable: a bug on one side, not a break
            return SerializationError(f"result part {key!r} could not be read: "
                                      f"{type(exc).__name__}: {exc}")
        if not isinstance(part, payload.ResultPart):
            return SerializationError(f"result part {key!r} holds a {type(part).__name__}")
        return part
