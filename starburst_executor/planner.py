"""How many pending calls go into the next batch, and when a batch is a straggler: pure code.

Estimates are per function (its content hash), never shared across functions: a quick
readiness call must not make later slow calls look cheap.  A call of a function with no
measured duration travels alone (one call per free worker), so nothing unknown is packed.
Once a duration is known, a batch holds just enough calls that the backend's per-batch
overhead (measured too) is at most ``max_overhead`` of its work, and never more than a fair
share of what remains, so the workers finish together (unless that share is shorter than
one batch's overhead: splitting it further would only add overhead).  That overhead is the
larger of two: the gap between two batches of a busy worker (its next one queued), and the
*hand-off* of a batch to a worker running none, which must first notice it (a poll of the
store) and whose results the client must notice in turn.  On a remote store the hand-off is
seconds, so trivial calls go to few workers in large batches.  ``chunksize`` (from ``map``)
overrides all of this, exactly.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["BatchPolicy", "Estimates", "next_batch_size", "even_shares", "is_straggler",
           "smoothed", "split_by_bytes"]


@dataclasses.dataclass(frozen=True)
class BatchPolicy:
    """Bounds on a batch.

    Attributes:
        overhead_seconds: what one batch costs beyond its calls (claim, fetch, results) until
            it is measured: the backend's first guess.
        max_overhead: the largest share of a batch's work its overhead may be.
        max_batch_items: never more calls than this in one batch.
        max_batch_bytes: never more pickled arguments than this in one batch (a single call
            larger than it still travels, alone).
        straggler_factor: a batch running this many times its estimate, plus
            ``straggler_margin`` seconds (or ten overheads, if more, up to its estimate), is
            a straggler.
        straggler_margin: the least time a batch must run past its estimate to be rerun.
        min_call_seconds: what a call costs beyond its function, whatever that function
            takes (its future, its arguments and its result, on the client and the worker:
            about 10-20 us measured here), so that a trivial function's calls are not
            planned as free.
    """

    overhead_seconds: float = 0.01
    max_overhead: float = 0.02
    max_batch_items: int = 100_000
    max_batch_bytes: int = 16 * 1024 * 1024
    min_call_seconds: float = 2e-5
    straggler_factor: float = 2.0
    straggler_margin: float = 1.0


class Estimates:
    """Measured durations: seconds per call of each function, and the per-batch overhead."""

    def __init__(self, overhead_seconds: float, handoff_seconds: float | None = None) -> None:
        self._per_call: dict[str, float] = {}
        self._seed = overhead_seconds
        self.overhead = overhead_seconds
        self.handoff = overhead_seconds if handoff_seconds is None else handoff_seconds

    def observe(self, digest: str, seconds: float, calls: int = 1) -> None:
        """Learn from ``calls`` calls of the function ``digest`` that ran ``seconds`` each on
        average (as much as from that many calls of that duration one after the other)."""
        seconds = max(0.0, seconds)
        old = self._per_call.get(digest)
        self._per_call[digest] = seconds if old is None else smoothed(old, seconds, calls)

    def seconds_per_call(self, digest: str) -> float | None:
        """The estimate for one call of ``digest``, or ``None`` if none finished yet."""
        return self._per_call.get(digest)

    def observe_overhead(self, seconds: float) -> None:
        """Learn from one gap between two batches of one worker (claim, fetch, results)."""
        seconds = min(max(seconds, self._seed / 10), 100 * self._seed)
        self.overhead = smoothed(self.overhead, seconds, weight=0.2)

    def observe_handoff(self, seconds: float) -> None:
        """Learn from one batch given to a worker running none: from its assignment to its
        first results seen, less the work in them."""
        seconds = min(max(seconds, self._seed / 10), 100 * max(self._seed, self.handoff))
        self.handoff = smoothed(self.handoff, seconds)


def smoothed(old: float, new: float, times: int = 1, weight: float = 0.3) -> float:
    """An exponential moving average of weight ``weight`` after ``times`` observations of
    ``new`` (one step for each, without a loop over them)."""
    kept = (1.0 - weight) ** max(1, times)
    return kept * old + (1.0 - kept) * new


def next_batch_size(
    remaining: int,
    workers: int,
    policy: BatchPolicy,
    *,
    chunksize: int | None = None,
    seconds_per_call: float | None = None,
    overhead: float | None = None,
    handoff: float | None = None,
) -> int:
    """Return how many of ``remaining`` pending calls the next batch takes (0 if none remain).

    Args:
        remaining: pending calls (of this function) not yet in a batch.
        workers: the number of workers sharing them.
        policy: the bounds.
        chunksize: calls per batch asked for by the user (``map(chunksize=)``).
        seconds_per_call: the measured duration of one call of this function, if any.
        overhead: the measured per-batch overhead (default ``policy.overhead_seconds``).
        handoff: the measured overhead of handing a batch to a worker running none (default
            ``overhead``): no batch is shorter than it, unless the calls left are.
    """
    if remaining <= 0:
        return 0
    if chunksize is not None:
        return min(chunksize, remaining, policy.max_batch_items)
    if seconds_per_call is None:
        return 1  # nothing known: one call per free worker
    per_batch = policy.overhead_seconds if overhead is None else overhead
    seconds_per_call = max(seconds_per_call, policy.min_call_seconds, 1e-9)
    worth = math.ceil(per_batch / (policy.max_overhead * seconds_per_call))
    fair = math.ceil(remaining / max(1, workers))
    # A share shorter than one batch's overhead finishes no sooner for being split: then
    # fewer workers share the rest, each batch at least as long as its overhead.
    least = math.ceil(max(per_batch, handoff or 0.0) / seconds_per_call)
    return max(1, min(worth, max(fair, least), remaining, policy.max_batch_items))


def even_shares(free_in: list[float], per_call: list[float], waiting: int) -> list[int]:
    """Share ``waiting`` calls among workers so that they finish together.

    Worker ``i`` is free in ``free_in[i]`` seconds (what it holds, by the estimates) and runs
    a call in ``per_call[i]`` seconds (a slow host: more).  Each gets the calls that bring it
    up to a common finishing time, rounded down; the calls left by the rounding go one each
    to the workers that would end them soonest, so that every call has a place and the first
    worker to run dry has the next one.  Returns the calls of each worker, in the order given.
    """
    n = len(free_in)
    if n == 0 or waiting <= 0:
        return [0] * n
    order = sorted(range(n), key=lambda i: free_in[i])
    # The finishing time ("water level") reached when the k soonest free share the calls.
    weight = offset = level = 0.0
    for rank, i in enumerate(order):
        weight += 1 / per_call[i]
        offset += free_in[i] / per_call[i]
        level = (waiting + offset) / weight
        if rank + 1 == n or level <= free_in[order[rank + 1]]:
            break
    shares = [max(0, math.floor((level - free_in[i]) / per_call[i])) for i in range(n)]
    # Fewer than one call each is left: to those whose one more call ends soonest.
    ends = sorted(range(n), key=lambda i: free_in[i] + (shares[i] + 1) * per_call[i])
    for i in ends[:max(0, waiting - sum(shares))]:
        shares[i] += 1
    return shares


def is_straggler(elapsed: float, expected: float | None, overhead: float,
                 policy: BatchPolicy) -> bool:
    """Whether a batch that has run ``elapsed`` seconds, for ``expected`` seconds of estimated
    work, is running well past its estimate (never, without an estimate)."""
    if expected is None:
        return False
    # Ten overheads of slack, but never more than the batch's own estimate: an overhead
    # measured large (a slow store) must not hide a batch running three times its estimate.
    margin = max(min(10 * overhead, expected), policy.straggler_margin)
    return elapsed > policy.straggler_factor * expected + margin


def split_by_bytes(sizes: list[int], max_bytes: int) -> int:
    """Return how many of the leading calls, of pickled ``sizes``, fit in ``max_bytes``.

    At least one call always fits, so an oversized call still travels (alone).
    """
    total = 0
    for count, size in enumerate(sizes):
        total += size
        if total > max_bytes and count > 0:
            return count
    return len(sizes)
