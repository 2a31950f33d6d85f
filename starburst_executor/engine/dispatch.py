"""Dispatch: which worker gets which batch, and when a batch is taken back or run twice.

Each turn of the manager, in order:

* a free worker (no batch) gets the next batch: a retry first, else one formed from the
  pending calls, sized from the estimates of its function (``planner``);
* while calls still wait and no more workers may start, a worker that runs (seen running,
  or its batch claimed) a batch whose calls have measured durations, or a batch running
  longer than a hand-off (its calls are not trivial), gets one more queued behind it, so it goes on without waiting for the client (it stays revocable until claimed),
  of at most its even share of the calls left (so the workers finish together);
* with nothing left to form, an idle worker takes over a batch queued behind a busy one (the
  claim decides: revoked first, or already started), else, with ``rerun_stragglers``, a
  second copy of a batch running well past its estimate: the first result of each call wins,
  and the worker still running the losing copy is stopped.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

from .. import payload
from ..planner import BatchPolicy, is_straggler
from .batches import ASSIGNED, CLAIMED, Batch, Batcher
from .claims import Claims
from .ledger import Ledger
from .workers import Worker, Workers

__all__ = ["Dispatcher"]


class Dispatcher:
    """Hands batches to workers (the manager thread's only); see the module docstring."""

    def __init__(self, workers: Workers, batcher: Batcher, claims: Claims, ledger: Ledger,
                 policy: BatchPolicy, rerun_stragglers: bool) -> None:
        self._workers = workers
        self._batcher = batcher
        self._claims = claims
        self._ledger = ledger
        self._policy = policy
        self._rerun_stragglers = rerun_stragglers
        self.inflight: dict[str, Batch] = {}
        self.retry: collections.deque[Batch] = collections.deque()
        self.waiting: Callable[[], int] = lambda: 0  # calls not in a batch yet (the manager's)

    # -- giving out batches -----------------------------------------------------------------

    def fill(self, workers: list[Worker], work_left: bool, may_queue: bool) -> bool:
        """Feed free workers, queue behind started ones (``may_queue``: no more workers may
        start, else a new worker is better than a place in a queue), or rebalance when no
        work is left."""
        if not work_left:
            return self._rebalance(workers)
        progress = False
        for worker in workers:
            if worker.batch is None:
                if not self.assign_next(worker):
                    return progress
                progress = True
        for worker in workers if may_queue else ():
            head = worker.batch
            # Only behind calls of measured duration: an unknown one may be long, and a call
            # queued behind it would wait instead of going to the next free worker.
            if head is not None and worker.queued is None and (self._timed(head) and (
                    head.claim == CLAIMED or worker.started) or self._long(head)):
                if not self.assign_next(worker, self._even_share(worker)):
                    break
                progress = True
        return progress

    def _even_share(self, worker: Worker) -> int | None:
        """The most calls ``worker`` may take on top of what it holds, so that the workers
        finish together: its share of every unfinished call, in proportion to its speed (a
        worker whose calls run five times longer than their estimates takes a fifth), less
        the calls it holds already."""
        def held(w: Worker) -> int:
            return sum(len(b.futures) for b in (w.batch, w.queued) if b is not None)

        total = sum(held(w) for w in self._workers.live()) + self.waiting()
        share = math.ceil(total / self._sharers(worker))
        head = worker.batch
        if head is not None and head.digest_of:
            expected = self._expected(head)
            if expected is not None and \
                    expected / len(head.digest_of) * share < self._batcher.estimates.handoff:
                return None  # a share is less work than a hand-off: batch as the planner says
        return max(1, share - held(worker))

    def _sharers(self, worker: Worker) -> float:
        """How many workers of ``worker``'s speed would do what all of them do together (the
        work is planned for ``share`` workers; those not started count at pace 1)."""
        live = self._workers.live()
        speed = sum(1 / self._pace(w) for w in live) + max(0, self._workers.share - len(live))
        return max(1.0, self._pace(worker) * speed)

    def _pace(self, worker: Worker) -> float:
        """Its measured pace, or more while its running batch is already past its estimate
        (a slow host shows before its first result does)."""
        head = worker.batch
        expected = self._expected(head) if head is not None and head.claim == CLAIMED else None
        if head is None or not expected:
            return worker.pace
        return max(worker.pace, min((time.monotonic() - head.claimed_at) / expected, 100.0))

    def _long(self, batch: Batch) -> bool:
        """Whether ``batch``, of calls not timed yet, has run longer than a hand-off: its
        calls are not trivial, and one more queued behind it spares its worker a poll."""
        return batch.claim == CLAIMED and \
            time.monotonic() - batch.claimed_at > self._batcher.estimates.handoff

    def _timed(self, batch: Batch) -> bool:
        """Whether every call of ``batch`` has a measured duration (only then is a batch
        queued behind it)."""
        estimates = self._batcher.estimates
        return all(estimates.seconds_per_call(d) is not None for d in batch.digest_of.values())

    def assign_next(self, worker: Worker, most: int | None = None) -> bool:
        """Give ``worker`` the next batch, if there is one, of at most ``most`` calls (never
        past its last call of ``max_tasks_per_child``)."""
        limit = worker.calls_left
        if most is not None:
            limit = most if limit is None else min(limit, most)
        if limit == 0:
            return False
        while True:
            if self.retry and (limit is None or len(self.retry[0].futures) <= limit):
                batch = self.retry.popleft()
            else:
                formed = self._batcher.form(round(self._sharers(worker)), limit)
                if formed is None:
                    if self.retry and worker.batch is None:  # too large for what it has left
                        self._workers.retire(worker, "max_tasks_per_child: too few calls left "
                                                     "for the batch to retry")
                    return False
                self._ledger.batches += 1
                batch = formed
                self._claims.bind(batch)
            self._workers.assign(worker, batch)
            self.inflight[batch.batch_id] = batch
            if batch.futures:
                return True
            self.complete(batch)  # every call of it was cancelled meanwhile

    # -- taking batches back ----------------------------------------------------------------

    def take_back_revoked(self) -> bool:
        """Requeue (or drop) the batches revoked by ``cancel()`` of one of their calls."""
        revoked = self._claims.take_revoked()
        for batch in revoked:
            self._take_back(batch)
        for batch in list(self.retry):
            with batch.lock:
                batch.drop_cancelled()
            if not batch.futures:
                self.retry.remove(batch)
        return bool(revoked)

    def _take_back(self, batch: Batch) -> None:
        if batch.worker is not None:
            self._workers.release(batch.worker, batch)
        self.inflight.pop(batch.batch_id, None)
        self._claims.requeue(batch)
        if batch.futures:
            self.retry.appendleft(batch)

    def cancel_unstarted(self) -> None:
        """``shutdown(cancel_futures=True)``: cancel every call no worker has started."""
        for batch in list(self.inflight.values()) + list(self.retry):
            for future in list(batch.futures.values()):
                future.cancel()  # revokes its batch if queued; False once started
        self._batcher.cancel_carried()
        self.take_back_revoked()

    def _rebalance(self, workers: list[Worker]) -> bool:
        progress = False
        for idle in [w for w in workers if w.batch is None]:
            batch = self._steal_queued()
            if batch is not None:
                self._workers.assign(idle, batch)
                self.inflight[batch.batch_id] = batch
                progress = True
            elif self._rerun_stragglers and self._rerun(idle):
                progress = True
        return progress

    def _steal_queued(self) -> Batch | None:
        for worker in self._workers.live():
            batch = worker.queued
            if batch is None or batch.claim != ASSIGNED or not self._claims.revoke(batch):
                continue
            self._workers.release(worker, batch)
            self.inflight.pop(batch.batch_id, None)
            self._claims.requeue(batch)
            if batch.futures:
                return batch
        return None

    def next_due(self) -> float | None:
        """Seconds until the first running batch is expected to end (by its calls' measured
        durations; 0 while one is late by less than its expected length, plus a second), so
        the manager looks for its results then rather than a backoff later; ``None`` if
        none is due."""
        now, due = time.monotonic(), None
        for worker in self._workers.live():
            head, queued = worker.batch, worker.queued
            if head is None or head.claim != CLAIMED or head.worker is not worker:
                continue
            if self._expected(head) is None and \
                    now - head.claimed_at < 4 * self._workers.poll_max:
                return 0.0  # its calls are not timed yet: its first results teach the most
            end = head.claimed_at
            for batch in (head, queued):  # the queued one starts as the head ends
                expected = self._expected(batch) if batch is not None else None
                if expected is None:
                    break
                end += expected
                left = end - now
                if left > -expected - 1.0 and (due is None or left < due):
                    due = max(0.0, left)
        return due

    def _expected(self, batch: Batch) -> float | None:
        expected = 0.0
        for digest in batch.digest_of.values():
            per_call = self._batcher.estimates.seconds_per_call(digest)
            if per_call is None:
                return None
            expected += per_call
        return expected

    # -- stragglers -------------------------------------------------------------------------

    def _rerun(self, idle: Worker) -> bool:
        now = time.monotonic()
        estimates = self._batcher.estimates
        worst, worst_over = None, 0.0
        for worker in self._workers.live():
            batch = worker.batch
            if batch is None or batch.claim != CLAIMED or batch.other is not None or \
                    not batch.futures or batch.worker is not worker:
                continue
            expected = self._expected(batch)
            elapsed = now - batch.claimed_at
            if expected is not None and elapsed - expected > worst_over and \
                    is_straggler(elapsed, expected, estimates.overhead, self._policy):
                worst, worst_over = batch, elapsed - expected
        if worst is None:
            return False
        worst.other = worst.worker
        self._ledger.reruns += len(worst.futures)
        self._workers.assign(idle, worst, rerun=True)
        return True

    def complete(self, batch: Batch, winner: str | None = None) -> None:
        """Every call of ``batch`` has its result: free its worker(s); stop a losing copy."""
        self.inflight.pop(batch.batch_id, None)
        copies = [w for w in (batch.worker, batch.other) if w is not None]
        rerun = batch.other is not None
        batch.other = None
        for worker in copies:
            if rerun and winner is not None and worker.worker_id != winner and \
                    worker.batch is batch and worker.stop_reason is None:
                # It still runs the slower copy: stop it (it is watched until it stops).
                self._workers.stop(worker, f"its copy of batch {batch.batch_id} was overtaken")
            else:
                self._workers.release(worker, batch)
                self._workers.retire_if_spent(worker)

    # -- learning from results --------------------------------------------------------------

    def observe(self, batch: Batch, part: payload.ResultPart, worker: Worker | None) -> None:
        """Learn call durations per function and the per-batch overhead from one part."""
        records = [r for r in part.records if r.item_id != payload.WHOLE_BATCH]
        if part.attempt == batch.attempt:
            self._claims.confirm(batch, part.attempt)
        if not records or worker is None:
            return
        for record in records:
            digest = batch.digest_of.get(record.item_id)
            seconds = record.finished - record.started
            estimate = self._batcher.estimates.seconds_per_call(digest) if digest else None
            if estimate is not None and estimate > 0.05:  # trivial calls say nothing of pace
                pace = min(max(seconds / estimate, 0.1), 100.0)
                worker.pace = 0.7 * worker.pace + 0.3 * pace
            self._batcher.observe(digest, seconds)
        first = part.attempt != batch.seen_attempt
        batch.seen_attempt = part.attempt
        if first and batch.queued and worker.last_end is not None:
            # Queued behind the previous batch: the gap between them is all overhead.
            gap = min(r.started for r in records) - worker.last_end
            if gap >= 0:
                self._batcher.estimates.observe_overhead(gap)
        elif first and worker.last_end is not None and batch.other is None:
            # Handed to a warm worker running nothing (not its first batch: no boot in it).
            work = sum(r.finished - r.started for r in records)
            self._batcher.estimates.observe_handoff(time.monotonic() - batch.assigned_at - work)
        worker.last_end = max(r.finished for r in records)
