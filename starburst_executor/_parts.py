"""Result parts: a worker's results of one batch attempt, written as numbered parts.

Calls' records are collected and written under ``results/<batch id>.<attempt>.<part>`` as they
finish: every ``flush_interval`` (a background thread), at ``flush_bytes``, and on a local
store every ``_FLUSH_RECORDS`` records; the last part is marked final, and on a remote store it
is written on a thread of its own while the worker looks for its next batch.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _keys, payload

__all__ = ["PartWriter", "nothing"]

# On a local store, a part is written at the latest after this many results, so the client
# can take in the first results of a long batch of quick calls while the worker runs the rest.
# On a remote store a part is a billed request and a round trip its batch waits for: there,
# the flusher's interval alone (or ``flush_bytes``) decides.
_FLUSH_RECORDS = 2000


class PartWriter:
    """Collects records and writes them as numbered result parts.

    A background thread flushes every ``flush_interval``, so a result that is ready does not
    wait behind a long call of the same batch.
    """

    def __init__(self, worker: Any, batch_id: str, attempt: int,
                 log: Callable[[str], None]) -> None:
        """``worker``: a ``worker.Worker`` (its store, secret, id and flush settings)."""
        self.worker = worker
        self._log = log
        self.batch_id = batch_id
        self.attempt = attempt
        self.part = 0
        self.records: list[payload.ResultRecord] = []
        self.size = 0
        self.last_flush = time.monotonic()
        self._most_records = math.inf if worker.remote else _FLUSH_RECORDS
        self._lock = threading.Lock()  # held while a part is written, so parts stay in order
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically,
                                         name="starburst-flusher", daemon=True)
        self._flusher.start()

    def add(self, record: payload.ResultRecord) -> None:
        with self._lock:
            self.records.append(record)
            self.size += len(record.data)
            if self.size >= self.worker.flush_bytes or len(self.records) >= self._most_records:
                self._write(final=False)

    def _flush_periodically(self) -> None:
        interval = self.worker.flush_interval
        while not self._closed.wait(interval):
            with self._lock:
                if self.records and time.monotonic() - self.last_flush >= interval:
                    try:
                        self._write(final=False)
                    except Exception as exc:  # the records stay for the next flush
                        self._log(f"{self.worker.worker_id}: writing results failed, will "
                                  f"retry: {type(exc).__name__}: {exc}")

    def flush(self, *, final: bool) -> None:
        if final:
            self._closed.set()
            self._flusher.join()
        with self._lock:
            if final and not self.records and self.part:
                return  # every result is out already: an empty last part would cost a request
            self._write(final=final)

    def finish(self) -> Callable[[], None]:
        """Write the last part on a thread of its own (on a remote store), while the worker
        looks for its next batch; return what waits for it (and raises what writing it
        raised)."""
        self._closed.set()
        self._flusher.join()
        if not self.records and self.part:
            return nothing  # every result is out already
        if not self.worker.remote:
            self.flush(final=True)  # microseconds: nothing to overlap
            return nothing
        failed: list[BaseException] = []

        def write() -> None:
            try:
                self.flush(final=True)
            except BaseException as exc:  # raised in the worker's thread, by wait()
                failed.append(exc)

        writing = threading.Thread(target=write, name="starburst-last-part", daemon=True)
        writing.start()

        def wait() -> None:
            writing.join()
            if failed:
                raise failed[0]

        return wait

    def _write(self, *, final: bool) -> None:
        part = payload.ResultPart(
            self.batch_id, self.attempt, self.worker.worker_id, self.records, final
        )
        key = _keys.result_key(self.batch_id, self.attempt, self.part)
        self.worker.store.put(key, part.encode(key=key, secret=self.worker.secret))
        self.part += 1
        self.records = []
        self.size = 0
        self.last_flush = time.monotonic()


def nothing() -> None:
    """What waits for a part already written (or none at all)."""
