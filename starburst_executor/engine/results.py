"""Reading the workers' results: one LIST of ``results/`` per poll, each new part read once."""

from __future__ import annotations

from .. import _keys, payload
from ..errors import SerializationError
from ..storage import ObjectStore

__all__ = ["ResultReader"]


class ResultReader:
    """Finds and reads the result parts written since the last look (manager thread only)."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
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

    def read(self, key: str) -> payload.ResultPart | SerializationError:
        """The part under ``key``, or the error that keeps it from being read."""
        try:
            part: payload.ResultPart = payload.load(self._store.get(key), "results")
        except SerializationError as exc:
            # E.g. a worker of another Python version wrote its refusal in its own format:
            # retrying elsewhere would give the same answer, so its batch fails.
            return exc
        return part
