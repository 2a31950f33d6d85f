"""A detached session's worker loop: no client assigns work, the worker takes it from the queue.

::

    each turn: halt written, or the session over max_cost / past its deadline  --> exit 0
               (the first worker to see a limit writes ``halt``, so the others stop too)
      one LIST of queue/, done/ and claims/: the first batch not done whose attempt is
      unclaimed, or whose claim's lease ran out --> claim its next attempt (create-if-absent)
          attempts lost > max_retries --> write WorkerLost as its whole result, mark it done
          else run it (the claim and the worker's record refreshed every lease_timeout / 3),
          then mark it done; a halt or a limit seen while it runs stops the worker at once
      nothing to claim for idle_timeout --> exit 0

Used by ``worker`` (``STARBURST_DETACHED=1``) with the worker's own ``_run_batch``.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from typing import Any

from . import _detached, _keys, payload
from ._parts import PartWriter
from .errors import ObjectNotFound, WorkerLost

__all__ = ["QueueServer"]


class QueueServer:
    """Serves a detached session's queue with ``worker`` (a ``worker.Worker``)."""

    def __init__(self, worker: Any, log: Any) -> None:
        self.worker = worker
        self.store = worker.store
        self.secret = worker.secret
        self._log = log
        self.doc = _detached.SessionDoc.read(self.store, self.secret)
        self.started = time.time()
        self._record_lock = threading.Lock()
        self._refresh = max(0.05, self.doc.lease_timeout / 3)

    # -- the worker's own record ------------------------------------------------------------

    def _write_record(self, exited: float | None = None) -> None:
        record = _detached.WorkerRecord(self.worker.worker_id, self.started, time.time(),
                                        exited, os.getpid(), socket.gethostname())
        with self._record_lock:
            _detached.write_signed(self.store, _detached.worker_key(record.worker_id),
                                   record.__dict__, self.secret)

    def serve(self) -> int:
        self._write_record()
        try:
            return self._loop()
        finally:
            self._write_record(exited=time.time())

    def _loop(self) -> int:
        idle_since = time.monotonic()
        delay = self.worker.poll_min
        last_record = time.monotonic()
        while True:
            why = self._halted()
            if why is not None:
                self._log(f"{self.worker.worker_id}: no more work: {why}")
                return 0
            target = self._next_claim()
            if target is not None:
                self._run(*target)
                idle_since = time.monotonic()
                delay = self.worker.poll_min
                continue
            if time.monotonic() - idle_since >= self.worker.idle_timeout and \
                    not self._on_watch():
                self._log(f"{self.worker.worker_id}: queue empty for "
                          f"{self.worker.idle_timeout:g}s, exiting")
                return 0
            if time.monotonic() - last_record >= self._refresh:
                self._write_record()
                last_record = time.monotonic()
            time.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 1.5, self.worker.poll_max, self._refresh)

    def _on_watch(self) -> bool:
        """Whether this idle worker must stay: some batch is unfinished (its worker may die,
        and the batch then needs a retry once its lease runs out), and of the live workers that
        run none of the unfinished batches this one has the lowest id: so one worker stays,
        whichever others died, and none is kept waiting on itself."""
        unfinished = self._unfinished()
        if not unfinished:
            return False
        latest = _detached.latest_claims(self.store)
        claims = (_detached.read_claim(self.store, b, latest[b]) for b in unfinished if b in latest)
        holders = {c.worker_id for c in claims if c is not None and c.worker_id}
        now = time.time()
        free = [r.worker_id for r in _detached.read_workers(self.store, self.secret)
                if r.alive(self.doc.lease_timeout, now) and r.worker_id not in holders]
        return min(free, default=self.worker.worker_id) >= self.worker.worker_id

    def _halted(self) -> str | None:
        try:
            return str(_detached.read_signed(self.store, _detached.HALT, self.secret)["reason"])
        except ObjectNotFound:
            pass
        except Exception as exc:  # a halt order that fails its check is not obeyed
            self._log(f"{self.worker.worker_id}: ignoring an unreadable halt order: {exc}")
        spent = _detached.spend(self.doc, _detached.read_workers(self.store, self.secret))
        why = self.doc.over_limit(spent)
        if why is not None:
            _detached.write_signed(self.store, _detached.HALT,
                                   {"reason": why, "at": time.time()}, self.secret)
        return why

    # -- claiming -----------------------------------------------------------------------------

    def _unfinished(self) -> list[str]:
        """The queued batches not done yet, in queue order (no LIST of done/ when none are)."""
        queued = [k[len(_detached.QUEUE_PREFIX):] for k in self.store.list(_detached.QUEUE_PREFIX)]
        if not queued:
            return []
        done = {k[len(_detached.DONE_PREFIX):] for k in self.store.list(_detached.DONE_PREFIX)}
        return [b for b in queued if b not in done]

    def _next_claim(self) -> tuple[str, int] | None:
        """Claim the next attempt of the first batch that needs one; ``(batch, attempt)``."""
        unfinished = self._unfinished()
        if not unfinished:
            return None
        latest = _detached.latest_claims(self.store)
        now = time.time()
        for batch_id in unfinished:
            attempt = latest.get(batch_id, 0)
            if attempt:
                held = _detached.read_claim(self.store, batch_id, attempt)
                if held is None or now - held.at <= self.doc.lease_timeout:
                    continue  # running elsewhere
            claim = _keys.Claim(self.worker.worker_id, at=time.time())
            if self.store.put_if_absent(_keys.claim_key(batch_id, attempt + 1), claim.encode()):
                return batch_id, attempt + 1
        return None

    def _run(self, batch_id: str, attempt: int) -> None:
        if attempt - 1 > self.doc.max_retries:
            self._give_up(batch_id, attempt)
        else:
            stop = threading.Event()
            lease = threading.Thread(target=self._keep_lease, args=(batch_id, attempt, stop),
                                     name="starburst-lease", daemon=True)
            lease.start()
            try:
                self.worker._run_batch(payload.Assignment(batch_id, attempt))
            finally:
                stop.set()
                lease.join()
        self.store.put(_detached.done_key(batch_id), b"")

    def _keep_lease(self, batch_id: str, attempt: int, stop: threading.Event) -> None:
        key = _keys.claim_key(batch_id, attempt)
        while not stop.wait(self._refresh):
            try:
                self.store.put(key, _keys.Claim(self.worker.worker_id, at=time.time()).encode())
                self._write_record()
                why = self._halted()
            except Exception as exc:  # the next refresh may get through
                self._log(f"{self.worker.worker_id}: lease refresh failed: {exc}")
                continue
            if why is not None:
                # Cancelled or over a limit while a call runs: stop billing now, as a live
                # executor stops its workers at max_cost; the batch is not finished.
                self._log(f"{self.worker.worker_id}: stopping batch {batch_id}: {why}")
                self._write_record(exited=time.time())
                os._exit(0)

    def _give_up(self, batch_id: str, attempt: int) -> None:
        lost = attempt - 1
        error = WorkerLost(
            f"batch {batch_id} was lost {lost} times (its workers stopped renewing their "
            f"lease for {self.doc.lease_timeout:g}s), more than max_retries="
            f"{self.doc.max_retries}", worker_id=self.worker.worker_id, batch_id=batch_id,
            attempts=lost)
        self._log(f"{self.worker.worker_id}: {error}")
        record = payload.encode_exception(payload.WHOLE_BATCH, error, time.time(), time.time(),
                                          "")
        writer = PartWriter(self.worker, batch_id, attempt, self._log)
        writer.add(record)
        writer.flush(final=True)

