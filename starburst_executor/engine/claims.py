"""Claims: an assigned batch stays revocable until its worker claims it; exactly one side wins.

::

    UNASSIGNED --assign--> ASSIGNED --worker creates claims/<batch>.<attempt>--> CLAIMED
        ^                     |                 (its futures become RUNNING)
        |                     +--client creates it first (a cancel(), an idle worker taking
        +---- requeued -------+  the batch over, shutdown(cancel_futures=True))--> REVOKED

Both sides create the claim with ``put_if_absent``, so a revoked attempt never starts and a
claimed one is never revoked.  A worker that finds its attempt revoked takes its next
assignment.  The client learns of claims from one LIST of ``claims/`` per turn, made only
while a worker's current batch is not known to be claimed, and from the results themselves.

:meth:`Claims.withdraw` runs in whatever thread calls ``Future.cancel()``: it decides under
the batch's lock, so it cannot race the manager assigning or confirming that batch, and
cancels the future (which runs done-callbacks) after releasing it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable

from .. import _keys
from .._future import start_all
from ..storage import ObjectStore
from .batches import ASSIGNED, CLAIMED, REVOKED, UNASSIGNED, Batch

__all__ = ["Claims"]


class Claims:
    """Revokes and confirms batch attempts (see the module docstring)."""

    def __init__(self, store: ObjectStore, wake: Callable[[], None]) -> None:
        self._store = store
        self._wake = wake
        self._lock = threading.Lock()
        self._revoked: list[Batch] = []  # revoked by a cancel(), for the manager to requeue

    def bind(self, batch: Batch) -> None:
        """Route ``cancel()`` of the batch's futures through :meth:`withdraw`."""
        withdraw = functools.partial(self.withdraw, batch)
        for future in batch.futures.values():
            future._withdraw = withdraw

    def withdraw(self, batch: Batch, item_id: int, cancel: Callable[[], bool]) -> bool:
        """``Future.cancel()`` of call ``item_id`` of ``batch``: revoke the batch unless it
        started."""
        with batch.lock:
            if batch.claim == CLAIMED or batch.claimed_at:
                return False  # started (a retried batch's calls stay RUNNING)
            if batch.claim == ASSIGNED:
                if not self._revoke_locked(batch):
                    return False
                with self._lock:
                    self._revoked.append(batch)
                self._wake()
            # Decided: no attempt will run it (the next one skips it).  The future itself is
            # cancelled outside the lock, since cancelling runs the user's done-callbacks.
            batch.withdrawn.add(item_id)
        return cancel()

    def revoke(self, batch: Batch) -> bool:
        """Take ``batch`` back from its worker (manager thread); ``False`` if it started."""
        with batch.lock:
            if batch.claim == CLAIMED:
                return False
            return batch.claim != ASSIGNED or self._revoke_locked(batch)

    def _revoke_locked(self, batch: Batch) -> bool:
        key = _keys.claim_key(batch.batch_id, batch.attempt)
        if self._store.put_if_absent(key, _keys.Claim(revoked=True, at=time.time()).encode()):
            batch.claim = REVOKED
            return True
        self._confirm_locked(batch)  # the worker was first
        return False

    def take_revoked(self) -> list[Batch]:
        """The batches revoked by ``cancel()`` since the last call."""
        with self._lock:
            revoked, self._revoked = self._revoked, []
        return revoked

    def confirm(self, batch: Batch, attempt: int) -> None:
        """The worker claimed ``attempt`` of ``batch`` (seen in a LIST or in its results)."""
        with batch.lock:
            if batch.attempt == attempt:
                self._confirm_locked(batch)

    def _confirm_locked(self, batch: Batch) -> None:
        if batch.claim != ASSIGNED:
            return
        batch.claim = CLAIMED
        if not batch.claimed_at:
            # First claimed: every future left is PENDING (a cancel() takes this lock, and
            # results come only after a claim), so one state change each.
            start_all(batch.futures.values())
        batch.claimed_at = time.monotonic()
        worker = batch.worker
        if batch.queued and worker is not None and worker.batch is batch and \
                worker.last_end is not None:
            # Queued behind a batch seen done: it started as that one's last call ended,
            # up to a poll before its claim is seen (its end is reckoned from its start).
            ago = max(0.0, time.time() - worker.last_end)
            batch.claimed_at = max(batch.assigned_at, batch.claimed_at - ago)

    def look(self, batches: Iterable[Batch]) -> None:
        """Confirm the claims of ``batches`` (assigned, unconfirmed) that workers made."""
        waiting = {b.batch_id: b for b in batches if b.claim == ASSIGNED}
        if not waiting:
            return
        start = _keys.CLAIMS_PREFIX + min(waiting)
        for key in self._store.list(_keys.CLAIMS_PREFIX, start_after=start):
            batch_id, attempt = _keys.parse_claim_key(key)
            batch = waiting.get(batch_id)
            if batch is not None:
                self.confirm(batch, attempt)

    @staticmethod
    def requeue(batch: Batch) -> None:
        """Make a revoked or lost attempt's batch ready for its next attempt."""
        with batch.lock:
            batch.drop_cancelled()
            batch.worker = None
            batch.queued = False
            batch.claim = UNASSIGNED
