"""Reading the workers' results: one LIST of ``results/`` per poll, each new part read once.

The new parts a LIST finds are fetched side by side (a few GETs in flight): with one part per
finished call and tens of milliseconds a GET, fetching them one by one would hold up the
manager's turn (and every assignment in it) for seconds.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .. import _keys, payload
from ..errors import SerializationError, StarburstError, StoreError
from ..storage import ObjectStore

__all__ = ["ResultReader"]

_FETCHERS = 8  # GETs in flight at once


class ResultReader:
    """Finds and reads the result parts written since the last look (manager thread only).

    ``secret`` is the session's: a part is unpickled only once its MAC for its key checks out.
    """

    def __init__(self, store: ObjectStore, *, secret: bytes) -> None:
        self._store = store
        self._secret = secret
        self._seen: set[str] = set()
        self._fetched: dict[str, bytes | StoreError] = {}

    def look(self, oldest_batch: str) -> list[str]:
        """The keys of the parts not seen before, of batches ``oldest_batch`` and later."""
        # Batch ids grow, so every part of an unfinished batch sorts after this key.
        start = _keys.RESULTS_PREFIX + oldest_batch
        keys = self._store.list(_keys.RESULTS_PREFIX, start_after=start)
        fresh = [k for k in keys if k not in self._seen]
        self._seen.update(fresh)
        if len(self._seen) > 4 * len(keys) + 1000:
            self._seen.intersection_update(keys)
        self._fetched.clear()
        if len(fresh) > 1:
            try:
                with ThreadPoolExecutor(min(_FETCHERS, len(fresh)),
                                        thread_name_prefix="starburst-fetch") as pool:
                    self._fetched = dict(zip(fresh, pool.map(self._get, fresh)))
            except RuntimeError:  # no new thread at interpreter exit: read() fetches them
                self._fetched.clear()
        return fresh

    def _get(self, key: str) -> bytes | StoreError:
        try:
            return self._store.get(key)
        except StoreError as exc:
            return exc

    def read(self, key: str) -> payload.ResultPart | StarburstError:
        """The part under ``key``, or the error that keeps it from being read.

        The error is an ``IntegrityError`` (not written there by this session), a
        ``StoreError`` (the GET failed after the store's own retries) or another
        ``SerializationError`` (e.g. a worker of another version wrote its refusal in its own
        format); it concerns this part's batch only, never the executor.
        """
        data = self._fetched.pop(key, None) or self._get(key)
        if isinstance(data, StoreError):
            return data
        try:
            part = payload.ResultPart.decode(data, key=key, secret=self._secret)
        except SerializationError as exc:
            return exc
        except Exception as exc:  # authentic yet unreadable: a bug on one side, not a break
            return SerializationError(f"result part {key!r} could not be read: "
                                      f"{type(exc).__name__}: {exc}")
        if not isinstance(part, payload.ResultPart):
            return SerializationError(f"result part {key!r} holds a {type(part).__name__}")
        return part
