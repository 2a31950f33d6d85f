"""The hand-off between the executor's threads and the manager thread: pending calls, under a lock.

``submit`` appends :class:`WorkItem` s to :attr:`Intake.pending` and wakes the manager; the
manager takes them out.  Nothing else is shared between the two sides.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import InvalidStateError
from typing import Any

from .._chunks import Chunks
from ..payload import PlainArgs
from .._future import StarburstFuture, finish_all
from .._progress import ProgressBar
from ..errors import ExecutorBroken

__all__ = ["Intake", "WorkItem"]


@dataclasses.dataclass(eq=False, slots=True)
class WorkItem:
    """A call that stays local until it is batched: the future and what to pickle.

    ``pickled`` holds the arguments once pickled (see ``engine.batches``), so a call that is
    moved to a later batch is not pickled again.
    """

    item_id: int
    future: StarburstFuture[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    chunksize: int | None = None
    pickled: bytes | Chunks | PlainArgs | None = None


class Intake:
    """State shared by the executor (any thread) and its manager, guarded by ``lock``."""

    def __init__(self, progress: ProgressBar | None) -> None:
        self.lock = threading.Lock()
        self.wakeup = threading.Event()
        self.pending: collections.deque[WorkItem] = collections.deque()
        self.shutdown = False
        self.cancel_queued = False  # shutdown(cancel_futures=True): revoke what has not started
        self.terminate_reason: str | None = None
        self.broken: str | None = None
        self.broken_by: ExecutorBroken | None = None  # what failed the futures when it broke
        self.next_id = 0
        self.progress = progress

    def broken_error(self) -> ExecutorBroken:
        """A new error for a submit to a broken executor, of the type that broke it."""
        first = self.broken_by
        if first is None:
            return ExecutorBroken(f"the executor stopped working: {self.broken}")
        error = type(first)(*first.args)
        error.__cause__ = first.__cause__
        return error

    def wake(self) -> None:
        self.wakeup.set()

    def settle(self, future: StarburstFuture[Any], ok: bool, value: Any) -> None:
        """Set a future's result (``ok``) or exception, once, and count it done."""
        try:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        except InvalidStateError:
            pass
        if self.progress is not None:
            self.progress.done()

    def settle_values(self, futures: Sequence[StarburstFuture[Any]], values: Sequence[Any]
                      ) -> None:
        """Set each future's result to its value (once each) and count them done: what
        :meth:`settle` does, for thousands of futures at a time (see ``_future.finish_all``)."""
        finish_all(futures, values)
        if self.progress is not None:
            self.progress.done(len(futures))

    def settle_all(self, futures: Iterable[StarburstFuture[Any]], error: BaseException) -> None:
        """Fail each of ``futures`` with ``error`` (once each)."""
        for future in futures:
            self.settle(future, False, error)
