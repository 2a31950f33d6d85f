"""Reading the workers' results: one LIST of ``results/`` per poll, each new part read once,
and settling the futures its records answer.

The new parts a LIST finds are fetched side by side (a few GETs in flight): with one part per
finished call and tens of milliseconds a GET, fetching them one by one would hold up the
manager's turn (and every assignment in it) for seconds.
"""

from __future__ import annotations

from typing import Any

from .. import _gc, _keys, _output, payload
from .._future import StarburstFuture
from ..errors import SerializationError, StarburstError, StoreError
from ..storage import ObjectStore
from .batches import Batch
from .fanout import Fanout
from .intake import Intake

__all__ = ["ResultReader", "settle_records"]


class ResultReader:
    """Finds and reads the result parts written since the last look (manager thread only).

    ``secret`` is the session's: a part is unpickled only once its MAC for its key checks out.
    """

    def __init__(self, store: ObjectStore, *, secret: bytes,
                 fanout: Fanout | None = None) -> None:
        self._store = store
        self._fanout = fanout or Fanout(store)
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
        if len(fresh) > 1 and self._fanout.remote:  # side by side; read() fetches the rest
            self._fetched = dict(zip(fresh, self._fanout.each(self._get, fresh)))
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
            with _gc.paused(len(data) > 8192):  # maybe thousands of records: see _gc
                part = payload.ResultPart.decode(data, key=key, secret=self._secret)
        except SerializationError as exc:
            return exc
        except Exception as exc:  # authentic yet unreadable: a bug on one side, not a break
            return SerializationError(f"result part {key!r} could not be read: "
                                      f"{type(exc).__name__}: {exc}")
        if not isinstance(part, payload.ResultPart):
            return SerializationError(f"result part {key!r} holds a {type(part).__name__}")
        return part


def settle_records(batch: Batch, part: payload.ResultPart, intake: Intake) -> None:
    """Resolve each future of ``batch`` that a record of ``part`` answers, with where and when
    its call ran on its metadata, and show what it printed.

    Records of calls resolved already (by an earlier attempt) and whole-batch records are
    passed over.  One loop for thousands of quick calls: this is the client's cost per result.
    """
    futures, done = batch.futures, batch.done_ids
    worker_id, attempt = part.worker_id, batch.attempt
    decode, settle = payload.decode_result, intake.settle
    returned: list[StarburstFuture[Any]] = []  # resolved together, at the end
    values: list[Any] = []
    for record in part.records:
        item_id = record.item_id
        future = futures.pop(item_id, None)
        if future is None:
            continue
        done.add(item_id)
        meta = future.metadata
        meta.worker_id = worker_id
        meta.attempts = attempt
        meta.started_at, meta.finished_at = record.started, record.finished
        if record.output:  # written before the future resolves, so it reads in order
            meta.output = record.output
            _output.write_output(item_id, record.output)
        ok, value = (True, record.value) if record.atom else decode(record)
        if ok:
            returned.append(future)
            values.append(value)
        else:
            settle(future, False, value)
    intake.settle_values(returned, values)
