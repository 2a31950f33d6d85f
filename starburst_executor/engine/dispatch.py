"""Dispatch: which worker gets which batch, and when a batch is taken back or run twice.

Each turn of the manager, in order:

* a free worker (no batch) gets the next batch: a retry first, else one formed from the
  pending calls, sized from the estimates of its function (``planner``);
* while calls still wait and no more workers may start, a worker that runs (seen running,
  or its batch claimed) a batch whose calls have measured durations, or a batch running
  longer than a hand-off (its calls are not trivial), gets one more queued behind it, so it
  goes on without waiting for the client (it stays revocable until claimed): the worker
  free soonest first, each of at most its even share of the calls left (``Outlook``: what
  brings every worker to one finishing time, so the workers finish together);
* with nothing left to form, an idle worker takes over a batch queued behind a busy one (the
  claim decides: revoked first, or already started), else, with ``rerun_stragglers``, a
  second copy of a batch running well past its estimate: the first result of each call wins,
  and the worker still running the losing copy is stopped.
"""

from __future__ import annotations

import collections
import operator
import time
from collections.abc import Callable

from .. import payload
from ..planner import BatchPolicy, is_straggler, smoothed
from .batches import ASSIGNED, CLAIMED, Batch, Batcher
from .claims import Claims
from .ledger import Ledger
from .outlook import Outlook
from .workers import Worker, Workers

__all__ = ["Dispatcher"]

_started = operator.attrgetter("started")
_finished = operator.attrgetter("finished")

_SLOW_HOST = 1.5  # a worker whose calls take this many times their estimate, or more


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
        self.outlook = Outlook(workers, batcher.estimates, lambda: self.waiting())

    # -- giving out batches -----------------------------------------------------------------

    def fill(self, workers: list[Worker], work_left: bool, may_queue: bool) -> bool:
        """Feed free workers, queue behind started ones (``may_queue``: no more workers may
        start, else a new worker is better than a place in a queue), or rebalance when no
        work is left."""
        if not work_left:
            return self._rebalance(workers)
        progress = False
        for worker in workers:
            if worker.batch is None and not self._better_left(worker):
                if not self.assign_next(worker):
                    return progress
                progress = True
        queueing = [w for w in workers if may_queue and w.batch is not None and w.queued is None
                    and self._may_queue_behind(w.batch, w)]
        if not queueing:
            return progress
        free_in, shares = self.outlook.even_shares()
        # The worker that runs dry first gets its next calls first.
        for worker in sorted(queueing, key=lambda w: free_in[w.worker_id]):
            most = shares.get(worker.worker_id)
            if most == 0:
                continue  # its share is held already: the others finish no later
            if worker.last_end is None:
                most = 1  # none of its calls ended yet: how fast a host it is, is not known
            if not self.assign_next(worker, most):
                break
            progress = True
        return progress

    def _better_left(self, worker: Worker) -> bool:
        """Whether free ``worker``, a slow host (its calls ran well past their estimates),
        had better take nothing: the others, free soon, end every call left sooner than
        it would end one (its even share is none)."""
        if worker.pace < _SLOW_HOST:
            return False
        _, shares = self.outlook.even_shares()
        return shares.get(worker.worker_id) == 0

    def _may_queue_behind(self, head: Batch, worker: Worker) -> bool:
        """Only behind calls of measured duration (an unknown one may be long, and a call
        queued behind it would wait instead of going to the next free worker), or behind a
        batch that has run longer than a hand-off."""
        return self.outlook.timed(head) and (head.claim == CLAIMED or worker.started) or \
            self.outlook.long(head)

    def assign_next(self, worker: Worker, most: int | None = None) -> bool:
        """Give ``worker`` the next batch, if there is one, of at most ``most`` calls (unless
        ``map(chunksize=)`` says how many; never past its last call of
        ``max_tasks_per_child``)."""
        limit = worker.calls_left
        both = limit if most is None else most if limit is None else min(limit, most)
        if limit == 0:
            return False
        while True:
            if self.retry and (both is None or len(self.retry[0].futures) <= both):
                batch = self.retry.popleft()
            else:
                formed = self._batcher.form(round(self.outlook.sharers(worker)), limit, most)
                if formed is None:
                    if self.retry and worker.batch is None:  # too large for what it has left
                        self._workers.retire(worker, "max_tasks_per_child: too few calls left "
                                                     "for the batch to retry")
                    return False
                self._ledger.batches += 1
                batch = formed
                self._claims.bind(batch)
            self._assign(worker, batch)
            if batch.futures:
                return True
            self.complete(batch)  # every call of it was cancelled meanwhile

    def _assign(self, worker: Worker, batch: Batch, *, rerun: bool = False) -> None:
        """Assign ``batch`` to ``worker`` (in flight from now), saying how long it should run,
        if known: the worker reads its next assignment late in it."""
        self._workers.assign(worker, batch, rerun=rerun, expected=self.outlook.expected(batch))
        self.inflight[batch.batch_id] = batch

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
            batch = self._steal_queued(idle)
            if batch is not None:
                self._assign(idle, batch)
                progress = True
            elif self._rerun_stragglers and self._rerun(idle):
                progress = True
        return progress

    def _steal_queued(self, idle: Worker) -> Batch | None:
        for worker in self._workers.live():
            batch = worker.queued
            if batch is None or batch.claim != ASSIGNED or \
                    not self.outlook.sooner_on(idle, batch) or not self._claims.revoke(batch):
                continue
            self._workers.release(worker, batch)
            self.inflight.pop(batch.batch_id, None)
            self._claims.requeue(batch)
            if batch.futures:
                return batch
        return None

    def next_due(self) -> float | None:
        """See :meth:`Outlook.next_due`."""
        return self.outlook.next_due()

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
            expected = self.outlook.expected(batch)
            elapsed = now - batch.claimed_at
            if expected is not None and elapsed - expected > worst_over and \
                    is_straggler(elapsed, expected, estimates.overhead, self._policy):
                worst, worst_over = batch, elapsed - expected
        if worst is None:
            return False
        worst.other = worst.worker
        self._ledger.reruns += len(worst.futures)
        self._assign(idle, worst, rerun=True)
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
        # A few passes in C over the records, not one in Python: a part of a map of quick
        # calls holds thousands, and this is the client's cost per result.
        calls = len(records)
        work = sum([r.finished - r.started for r in records])
        first_start = min(map(_started, records))
        per_call = work / calls
        digest = batch.digest
        estimate = self._batcher.estimates.seconds_per_call(digest)
        if estimate is not None and estimate > 0.05:  # trivial calls say nothing of pace
            pace = min(max(per_call / estimate, 0.1), 100.0)
            # Before its first results, no pace of this worker is known yet.
            worker.pace = pace if worker.last_end is None else smoothed(worker.pace, pace, calls)
        self._batcher.observe(digest, per_call, calls)
        first = part.attempt != batch.seen_attempt
        batch.seen_attempt = part.attempt
        if first and batch.worker is worker and batch.other is None:
            # It started when its first call did, not when its claim was seen (up to a poll
            # later): from then on its end, and its worker's pace, are reckoned right.
            ago = time.time() - first_start
            batch.claimed_at = max(batch.assigned_at,
                                   min(batch.claimed_at, time.monotonic() - max(0.0, ago)))
        if first and batch.queued and worker.last_end is not None:
            # Queued behind the previous batch: the gap between them is all overhead.
            gap = first_start - worker.last_end
            if gap >= 0:
                self._batcher.estimates.observe_overhead(gap)
        elif first and worker.last_end is not None and batch.other is None:
            # Handed to a warm worker running nothing (not its first batch: no boot in it).
            self._batcher.estimates.observe_handoff(time.monotonic() - batch.assigned_at - work)
        worker.last_end = max(map(_finished, records))
