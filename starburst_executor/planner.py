"""How many pending calls go into the next batch: a pure function.

Guided self-scheduling: early batches are large (few requests, one cold start amortised over
much work), later ones shrink so the workers finish together.  Once the duration of a call is
known, a batch is never planned shorter than ``min_batch_seconds`` of work, so trivial calls go
in a few large batches.  ``chunksize`` (from ``map``) overrides all of this.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["BatchPolicy", "next_batch_size", "split_by_bytes"]


@dataclasses.dataclass(frozen=True)
class BatchPolicy:
    """Bounds on a batch.

    Attributes:
        min_batch_seconds: the least work (estimated) worth one batch's round trip.
        max_batch_items: never more calls than this in one batch.
        max_batch_bytes: never more pickled arguments than this in one batch (a single call
            larger than it still travels, alone).
        balance: how many batches per worker the remaining work is split into, at least.
    """

    min_batch_seconds: float = 0.05
    max_batch_items: int = 100_000
    max_batch_bytes: int = 16 * 1024 * 1024
    balance: int = 1


def next_batch_size(
    remaining: int,
    workers: int,
    policy: BatchPolicy,
    *,
    chunksize: int | None = None,
    seconds_per_call: float | None = None,
) -> int:
    """Return how many of ``remaining`` pending calls the next batch takes (0 if none remain).

    Args:
        remaining: pending calls not yet in a batch.
        workers: the number of workers sharing them.
        policy: the bounds.
        chunksize: calls per batch asked for by the user (``map(chunksize=)``).
        seconds_per_call: the measured duration of one call so far, if any.
    """
    if remaining <= 0:
        return 0
    if chunksize is not None:
        return min(chunksize, remaining, policy.max_batch_items)
    size = math.ceil(remaining / (policy.balance * max(1, workers)))
    if seconds_per_call is not None:
        worth = math.ceil(policy.min_batch_seconds / max(seconds_per_call, 1e-9))
        size = max(size, worth)
    return max(1, min(size, remaining, policy.max_batch_items))


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
