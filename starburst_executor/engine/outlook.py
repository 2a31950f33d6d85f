"""What the estimates say of the workers and their batches: how long a batch runs, when each
worker is free, the share of the calls left each should take, when results are due.

Read-only views for the dispatcher and the manager's loop (the manager thread's only).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import planner
from ..planner import Estimates
from .batches import ASSIGNED, CLAIMED, Batch
from .workers import Worker, Workers

__all__ = ["Outlook"]

_LATE_LOOK = 0.05  # seconds between looks for late results, at most (see next_due)
# Seconds after a batch is expected to end that its results are first looked for, at most:
# its worker's write of the last part is one round trip (S3: ~30-100 ms).
_END_LOOK = 0.1


class Outlook:
    """Estimates applied to the live workers (see the module docstring)."""

    def __init__(self, workers: Workers, estimates: Estimates,
                 waiting: Callable[[], int]) -> None:
        self._workers = workers
        self._estimates = estimates
        self._waiting = waiting  # calls not in a batch yet

    def even_shares(self) -> tuple[dict[str, float], dict[str, int | None]]:
        """When each live worker is free (seconds, by the estimates and its pace), and the most
        calls each may take on top of what it holds so that all finish together (a worker
        whose calls run five times longer than their estimates takes a fifth; ``None``: as
        the planner says, when its share is shorter than the gap between two batches; no
        shares at all when no running call is timed).  Workers planned but not started
        count as free now, at pace 1."""
        now = time.monotonic()
        free_in: dict[str, float] = {}
        per_call: dict[str, float] = {}
        paces: dict[str, float] = {}
        for worker in self._workers.live():
            head, pace, left = worker.batch, self.pace(worker), 0.0
            paces[worker.worker_id] = pace
            each = self.per_call(head) if head is not None else None
            for batch in (head, worker.queued):
                if batch is not None:
                    expected = self.expected(batch)
                    if expected is None:
                        expected = (each or 0.0) * len(batch.futures)
                    left += _left(batch, expected, pace, now) if batch is head else \
                        expected * pace
            free_in[worker.worker_id] = left
            if each:
                per_call[worker.worker_id] = each * pace
        if not per_call:
            return free_in, {}
        # A worker running nothing (or not started) runs the calls left at its own pace.
        typical = sum(per_call[i] / paces[i] for i in per_call) / len(per_call)
        for i in free_in:
            per_call.setdefault(i, typical * paces[i])
        ids = list(free_in) + [""] * max(0, self._workers.share - len(free_in))
        counts = planner.even_shares([free_in.get(i, 0.0) for i in ids],
                                     [per_call.get(i, typical) for i in ids], self._waiting())
        # A queued batch runs right after the one before it: the gap between them is the
        # overhead that counts (a hand-off to an idle worker costs more, but none is made).
        gap = self._estimates.overhead
        shares: dict[str, int | None] = {
            i: None if 0 < n * per_call[i] < gap else n for i, n in zip(ids, counts) if i}
        return free_in, shares

    def sooner_on(self, worker: Worker, batch: Batch) -> bool:
        """Whether free ``worker`` would end ``batch``, queued behind another worker's running
        batch, before that worker does (a slow host would not: it leaves the batch there)."""
        holder, expected = batch.worker, self.expected(batch)
        head = holder.batch if holder is not None else None
        head_expected = self.expected(head) if head is not None else None
        if holder is None or head is None or head_expected is None or expected is None:
            return True  # when the holder is free is not known
        left = _left(head, head_expected, self.pace(holder), time.monotonic())
        return expected * self.pace(worker) < left + expected * self.pace(holder)

    def per_call(self, batch: Batch) -> float | None:
        expected = self.expected(batch)
        return expected / batch.calls if expected is not None and batch.calls else None

    def sharers(self, worker: Worker) -> float:
        """How many workers of ``worker``'s speed would do what all of them do together (the
        work is planned for ``share`` workers; those not started count at pace 1)."""
        live = self._workers.live()
        speed = sum(1 / self.pace(w) for w in live) + max(0, self._workers.share - len(live))
        return max(1.0, self.pace(worker) * speed)

    def pace(self, worker: Worker) -> float:
        """Its measured pace, or more while its running batch is already past its estimate
        (a slow host shows before its first result does) by more than the shortest poll (a
        batch that ended is seen up to that late)."""
        head = worker.batch
        expected = self.expected(head) if head is not None and head.claim == CLAIMED else None
        if head is None or not expected:
            return worker.pace
        elapsed = time.monotonic() - head.claimed_at - self._workers.poll_min
        return max(worker.pace, min(elapsed / expected, 100.0))

    def long(self, batch: Batch) -> bool:
        """Whether ``batch``, of calls not timed yet, may have run longer than a hand-off (its
        claim is seen up to the shortest poll late): its calls are not trivial, and one more
        queued behind it spares its worker a poll.  On S3, where both are a second, that is
        as soon as its claim is seen: else twenty first calls of 2 s, claimed a second before
        the client looked, ended before a second call was queued, and each worker then
        waited a poll for it."""
        return batch.claim == CLAIMED and time.monotonic() - batch.claimed_at > \
            self._estimates.handoff - self._workers.poll_min

    def timed(self, batch: Batch) -> bool:
        """Whether every call of ``batch`` has a measured duration (only then is a batch
        queued behind it)."""
        return not batch.calls or self._estimates.seconds_per_call(batch.digest) is not None

    def next_due(self) -> float | None:
        """Seconds until the manager should look at the store again, or ``None`` if nothing
        is due (then it backs off):

        * a worker still starting: half the longest poll (a cold start is half a minute;
          the moment it runs is seen within seconds, not after a long backoff);
        * a running worker whose batch is not seen claimed, or whose calls are not timed yet
          (its first results teach the most): the shortest poll;
        * a batch expected to end (by its calls' measured durations): just after (a quarter
          of the shortest poll, at most ``_END_LOOK``), then while it is late by less than its
          length plus a second, the shortest poll, or when nothing is queued behind it (its
          worker waits for the client, or these are the last results the caller waits for)
          half its lateness, between ``_END_LOOK`` and a quarter of that poll (if it is long).
        """
        poll_min, now, due = self._workers.poll_min, time.monotonic(), None
        # Sooner than the shortest poll only where that is long (a remote store): a local
        # one's, milliseconds, is soon enough, and a manager spinning takes a worker's core.
        late = max(poll_min / 4, min(poll_min, _LATE_LOOK))

        def soon(seconds: float) -> None:
            nonlocal due
            due = seconds if due is None else min(due, seconds)

        for worker in self._workers.live():
            head, queued = worker.batch, worker.queued
            if head is None or head.worker is not worker:
                continue
            if head.claim == ASSIGNED:
                soon(poll_min if worker.started or worker.warm else self._workers.poll_max / 2)
                continue
            if head.claim != CLAIMED:
                continue
            if self.expected(head) is None:
                if now - head.claimed_at < 4 * self._workers.poll_max:
                    soon(poll_min)
                continue
            end = head.claimed_at
            for batch in (head, queued):  # the queued one starts as the head ends
                expected = self.expected(batch) if batch is not None else None
                if expected is None:
                    break
                end += expected
                left = end - now
                if left > 0:
                    soon(left + min(poll_min / 4, _END_LOOK))
                elif left > -expected - 1.0:
                    # Just late, a last batch's end was most likely reckoned a little early
                    # (from when its claim was seen): look again soon, then less often.
                    last = batch is head and queued is None
                    soon(min(late, max(_END_LOOK, -left / 2)) if last else poll_min)
        return due

    def expected(self, batch: Batch) -> float | None:
        if not batch.calls:
            return 0.0
        per_call = self._estimates.seconds_per_call(batch.digest)
        return None if per_call is None else per_call * batch.calls


def _left(batch: Batch, expected: float, pace: float, now: float) -> float:
    """Seconds a worker of ``pace`` has left of ``batch``, expected to run ``expected`` seconds
    at pace 1: all of it until it is claimed."""
    ran = now - batch.claimed_at if batch.claim == CLAIMED else 0.0
    return max(0.0, expected * pace - ran)
