"""Batches: cut pending calls into batches, pickle each call's arguments once, upload them.

A call's arguments are pickled once, on their own (``payload.ArgsPickler``), when the call is
taken for a batch; their size decides where the batch is cut (``planner.split_by_bytes``), and
calls cut off wait in ``carry`` with their pickle for the next batch.  A function is uploaded
once per content hash, and again when its upload is older than ``FUNCTION_REFRESH_SECONDS`` (a
session may outlive the bucket's expiry rule, which deletes session objects after days); a batch
is one object.  Once its object is written, nothing of a batch
but its futures stays in client memory.  A batch of at most ``inline_max`` bytes is not written
at all: it travels inside each of its assignments (``payload.Assignment.batch``), and its
object stays in client memory until the batch is done (for its retries and reruns).  So does
a function of at most ``inline_max`` bytes, in the assignment of each worker's first batch of
it (``payload.Assignment.function``), while it is among the ``_SMALL_FUNCTIONS`` latest.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import _gc, _keys, payload
from .._future import StarburstFuture
from ..errors import PayloadTooLarge, SerializationError
from ..planner import BatchPolicy, Estimates, next_batch_size, smoothed, split_by_bytes
from ..storage import ObjectStore
from .intake import Intake, WorkItem

if TYPE_CHECKING:
    from .workers import Worker

__all__ = ["Batch", "Batcher"]

# A batch lost for a reason that is not its fault (Spot interruption, a worker that exited
# idle just as work was assigned to it) is retried without using up a retry, this many times.
_FREE_RETRIES = 5

FUNCTION_REFRESH_SECONDS = 12 * 3600.0
"""Upload a function again before a batch that uses it once its last upload is this old: half
of the shortest expiry ``starburst setup`` can set (1 day; S3 may expire objects up to a day
late, never early)."""

_SMALL_FUNCTIONS = 16  # small functions kept to send inline (the rest are read from the store)

_NO_KWARGS: dict[str, Any] = {}  # shared by the calls whose arguments are pickled (never changed)

# Where a batch's current attempt stands (``Batch.claim``); see ``engine.claims``.
UNASSIGNED, ASSIGNED, CLAIMED, REVOKED = "unassigned", "assigned", "claimed", "revoked"


@dataclasses.dataclass(eq=False)
class Batch:
    """A batch the client knows of: uploaded, then assigned, retried or done."""

    batch_id: str
    futures: dict[int, StarburstFuture[Any]]  # the unresolved ones
    done_ids: set[int] = dataclasses.field(default_factory=set)
    attempt: int = 0
    failures: int = 0  # attempts lost that count against max_retries
    free_retries: int = 0
    worker: Worker | None = None
    assigned_at: float = 0.0
    digest: str = ""  # the function of its calls (a batch holds one function's)
    calls: int = 0  # how many calls it was formed with
    claim: str = UNASSIGNED
    claimed_at: float = 0.0
    queued: bool = False  # assigned behind another batch of its worker
    other: Worker | None = None  # the worker of the first copy, once a straggler runs twice
    seen_attempt: int = 0  # the last attempt results were seen of
    withdrawn: set[int] = dataclasses.field(default_factory=set)  # cancel() let go of them
    lock: threading.RLock = dataclasses.field(default_factory=threading.RLock)
    body: bytes = b""  # its object, when it travels inline (never written to the store)
    function: bytes = b""  # its function's object, if small: sent to a worker without it

    def drop_cancelled(self) -> None:
        """Forget the calls cancelled while no worker could start them (call under ``lock``)."""
        withdrawn = self.withdrawn
        for item_id in [i for i, f in self.futures.items() if i in withdrawn or f.cancelled_now()]:
            del self.futures[item_id]
            self.done_ids.add(item_id)

    def count_loss(self, blameless: bool) -> None:
        """Count a lost attempt: against ``max_retries``, unless blameless and free ones remain."""
        if blameless and self.free_retries < _FREE_RETRIES:
            self.free_retries += 1
        else:
            self.failures += 1


class Batcher:
    """Forms and uploads new batches from the intake (the manager thread's only)."""

    def __init__(self, intake: Intake, store: ObjectStore, policy: BatchPolicy, *,
                 secret: bytes, clock: Callable[[], float] = time.monotonic,
                 max_size: int | None = None) -> None:
        self._intake = intake
        self._max_size = max_size  # max_result_size: larger arguments fail their call
        self._secret = secret  # signs every object uploaded (payload's MAC)
        self._store = store
        self._policy = policy
        self._clock = clock
        self._carry: collections.deque[WorkItem] = collections.deque()  # batched, not yet sent
        self._uploaded: dict[str, float] = {}  # function digest -> when it was last uploaded
        self._bytes_per_call: float | None = None
        self.estimates = Estimates(policy.overhead_seconds)
        # id(fn) -> (fn, its pickle's digest or why it cannot travel); fn is kept so that its
        # id is not reused while cached.
        self._functions: dict[int, tuple[Callable[..., Any], str | SerializationError]] = {}
        self._pickled: dict[str, bytes] = {}  # digests pickled but not uploaded yet
        self._small: dict[str, bytes] = {}  # the latest small functions' objects, by digest
        self._next_batch = 0
        self.inline_max = 0  # batches this small travel inside their assignment (not stored)

    @property
    def carried(self) -> int:
        """Calls cut off a batch that wait for the next one."""
        return len(self._carry)

    def observe(self, digest: str, seconds: float, calls: int = 1) -> None:
        """Learn from ``calls`` calls of the function ``digest`` (``seconds`` each on average)
        how long its calls take."""
        self.estimates.observe(digest, seconds, calls)

    def form(self, workers: int, limit: int | None = None,
             share: int | None = None) -> Batch | None:
        """Upload the next batch for ``workers`` sharing the work, of at most ``limit`` calls
        and, unless the calls came with a ``chunksize``, at most ``share``; ``None`` when
        none is left."""
        while True:
            items = self._take_items(workers, limit, share)
            if not items:
                return None
            with _gc.paused(len(items) > 1000):  # see _gc
                batch = self._upload(items)
            if batch is not None:
                return batch

    def forget_uploads(self) -> None:
        """Upload every function again when next used (a stored one failed its check)."""
        self._uploaded.clear()

    def drain(self, error: BaseException) -> None:
        """Fail the carried calls with ``error``."""
        for item in self._carry:
            self._intake.settle(item.future, False, error)
        self._carry.clear()

    def cancel_carried(self) -> None:
        """Cancel the calls cut off a batch (``shutdown(cancel_futures=True)``)."""
        for item in self._carry:
            item.future.cancel()
        self._carry.clear()

    def _take_items(self, workers: int, limit: int | None = None,
                    share: int | None = None) -> list[WorkItem]:
        """Move the next batch's worth of calls (of one function) out of the queue.

        Calls cut off an earlier batch (``_carry``) go first.  They stay PENDING: a call
        becomes RUNNING only once a worker claims its batch.
        """
        if self._bytes_per_call is None:
            self._estimate_bytes()
        with self._intake.lock:
            for queue in (self._carry, self._intake.pending):
                while queue and queue[0].future.cancelled_now():
                    queue.popleft()
            source = self._carry or self._intake.pending
            if not source:
                return []
            head = source[0]
        digest = self._digest(head.fn)  # outside the lock: it may pickle the function
        spc = None if isinstance(digest, SerializationError) else \
            self.estimates.seconds_per_call(digest)
        with self._intake.lock:
            chunksize = head.chunksize
            size = next_batch_size(len(source), workers, self._policy, chunksize=chunksize,
                                   seconds_per_call=spc, overhead=self.estimates.overhead,
                                   handoff=self.estimates.handoff)
            if self._bytes_per_call and chunksize is None:
                fit = int(self._policy.max_batch_bytes / self._bytes_per_call)
                size = max(1, min(size, fit))
            if share is not None and chunksize is None:  # map(chunksize=) stays exact
                size = min(size, share)
            if limit is not None:
                size = min(size, limit)
            items: list[WorkItem] = []
            while source and len(items) < size and source[0].chunksize == chunksize and \
                    source[0].fn is head.fn:
                item = source.popleft()
                if not item.future.cancelled_now():
                    items.append(item)
        return items

    def _digest(self, fn: Callable[..., Any]) -> str | SerializationError:
        """The content hash of ``fn``'s pickle (pickled once per function object)."""
        known = self._functions.get(id(fn))
        if known is not None and known[0] is fn:
            return known[1]
        if len(self._functions) > 512:
            self._functions.clear()
        payload.register_local_modules()  # so the user's own modules travel by value
        try:
            pickled = payload.pickle_function(fn)
        except SerializationError as exc:
            self._functions[id(fn)] = (fn, exc)
            return exc
        digest = payload.function_digest(pickled)
        if digest not in self._uploaded:
            self._pickled[digest] = pickled
        self._functions[id(fn)] = (fn, digest)
        return digest

    def _estimate_bytes(self) -> None:
        # The first call's size bounds the first batch in bytes; its pickle is kept for it.
        with self._intake.lock:
            pending = self._intake.pending
            first = self._carry[0] if self._carry else pending[0] if pending else None
        if first is None or first.pickled is not None:
            return
        try:
            first.pickled = payload.pickle_args(first.item_id, first.args, first.kwargs,
                                                self._max_size)
        except (SerializationError, PayloadTooLarge):
            return  # reported with its batch
        self._bytes_per_call = float(len(first.pickled))

    def _pickle_args(self, items: list[WorkItem]) -> tuple[list[WorkItem], list[int]]:
        """Pickle the arguments of the calls not pickled yet; fail those that cannot travel.
        Returns the others, and the size of each one's pickle."""
        dumps = payload.ArgsPickler(self._max_size).dumps
        kept, sizes = [], []
        for item in items:
            pickled = item.pickled
            if pickled is None:
                try:
                    pickled = item.pickled = dumps(item.item_id, item.args, item.kwargs)
                except (SerializationError, PayloadTooLarge) as exc:
                    self._intake.settle(item.future, False, exc)
                    continue
            item.args = ()  # the pickle is what travels now
            item.kwargs = _NO_KWARGS
            kept.append(item)
            sizes.append(len(pickled))
        return kept, sizes

    def _upload_function(self, fn: Callable[..., Any]) -> str | SerializationError:
        """Upload ``fn`` unless uploaded lately; its digest, or why it cannot travel."""
        digest = self._digest(fn)
        if isinstance(digest, SerializationError):
            return digest
        now, last = self._clock(), self._uploaded.get(digest)
        if last is None or now - last >= FUNCTION_REFRESH_SECONDS:
            pickled = self._pickled.pop(digest, None) or payload.pickle_function(fn)
            key = _keys.function_key(digest)
            framed = payload.dump("function", pickled, key=key, secret=self._secret)
            self._store.put(key, framed)
            self._uploaded[digest] = now
            self._small.pop(digest, None)
            if len(framed) <= self.inline_max:
                self._small[digest] = framed
                if len(self._small) > _SMALL_FUNCTIONS:
                    del self._small[next(iter(self._small))]  # the one uploaded longest ago
        return digest

    def _upload(self, items: list[WorkItem]) -> Batch | None:
        payload.register_local_modules()
        digest = self._upload_function(items[0].fn)  # a batch calls one function
        if isinstance(digest, SerializationError):
            self._intake.settle_all([item.future for item in items], digest)
            return None
        items, sizes = self._pickle_args(items)
        keep = split_by_bytes(sizes, self._policy.max_batch_bytes)
        for item in reversed(items[keep:]):
            self._carry.appendleft(item)
        del items[keep:]
        if not items:
            return None
        batch_id = f"b{self._next_batch:09d}"
        self._next_batch += 1
        key = _keys.batch_key(batch_id)
        futures = {}
        pickles: list[Any] = []
        for item in items:
            futures[item.item_id] = item.future
            item.future.metadata.batch_id = batch_id
            pickles.append(item.pickled)
        body = payload.Batch.encode_columns(batch_id, (digest,), list(futures),
                                            [0] * len(items), pickles,
                                            key=key, secret=self._secret)
        per_call = len(body) / len(items)
        bpc = self._bytes_per_call
        self._bytes_per_call = per_call if bpc is None else smoothed(bpc, per_call)
        inline = bytes(body) if len(body) <= self.inline_max else b""
        if not inline:
            self._store.put(key, body)
        return Batch(batch_id, futures, digest=digest, calls=len(futures), body=inline,
                     function=self._small.get(digest, b""))
