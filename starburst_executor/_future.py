"""The Future this executor returns: a stdlib Future that also says where its call ran.

Its done-callbacks never break the thread that resolves it once that thread called
:func:`shield_callbacks` (the manager thread does): whatever a callback raises, ``SystemExit``
and ``KeyboardInterrupt`` included, is logged as the stdlib logs callback exceptions, and the
next callbacks still run.  Elsewhere (a user's thread calling ``cancel()``) the stdlib rules hold.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import operator
import threading
from concurrent.futures import Future
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

__all__ = ["CallMetadata", "StarburstFuture", "shield_callbacks", "start_all", "finish_all"]

T = TypeVar("T")

_LOGGER = logging.getLogger("concurrent.futures")
_shielded = threading.local()
_FINISHED = FINISHED
_CANCELLED = (CANCELLED, CANCELLED_AND_NOTIFIED)
_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


def shield_callbacks() -> None:
    """From now on, done-callbacks run by this thread never raise into it (see the module)."""
    _shielded.on = True


@dataclasses.dataclass(slots=True)
class CallMetadata:
    """Where and when a call ran.  Filled in by the executor as the call progresses.

    Attributes:
        item_id: the call's number in its executor.
        submitted_at: ``time.time()`` at submit.
        batch_id: the batch that carried it, once batched.
        worker_id: the worker that ran its last attempt, once known.
        attempts: how many times its batch was run (1 unless a worker was lost).
        started_at: when the worker started the call (worker clock).
        finished_at: when the worker finished it (worker clock).
        output: what the call printed and logged, in order: ``(("stdout", text),
            ("stderr", text), ...)``, the last MiB of it (empty with ``forward_output=False``).
    """

    item_id: int
    submitted_at: float
    batch_id: str | None = None
    worker_id: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    output: tuple[tuple[str, str], ...] = ()

    @property
    def duration(self) -> float | None:
        """Seconds the call itself ran on the worker, once finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def stdout(self) -> str:
        """What the call wrote to ``sys.stdout``."""
        return "".join(text for stream, text in self.output if stream == "stdout")

    @property
    def stderr(self) -> str:
        """What the call wrote to ``sys.stderr``, log records included."""
        return "".join(text for stream, text in self.output if stream == "stderr")


class StarburstFuture(Future[T]):
    """A :class:`concurrent.futures.Future` with :attr:`metadata` about its remote call."""

    metadata: CallMetadata

    def __init__(self, metadata: CallMetadata):
        super().__init__()
        self.metadata = metadata
        # Set by the executor while the call sits in a batch queued for a worker: revokes that
        # batch (or learns that the worker has started it), so cancel() keeps its promise.
        self._withdraw: Callable[[int, Callable[[], bool]], bool] | None = None

    @classmethod
    def sharing(cls, condition: threading.Condition | None, metadata: CallMetadata
                ) -> StarburstFuture[Any]:
        """A future whose lock is ``condition``, shared with the other futures of one ``map``
        (``None``: a lock of its own).

        A Future's own Condition is most of what making one costs (~2 of ~2.5 us); a map of
        10,000 quick calls makes them all before it yields a result.  Sharing is safe: the
        lock is reentrant, and a ``notify_all`` for another future of the map only makes a
        waiter in :meth:`result` or :meth:`exception` look at its own again.
        """
        if condition is None:
            return cls(metadata)
        future = cls.__new__(cls)
        # What __init__ sets (a test checks that the two agree), with the shared lock; one
        # dict, set at once, is the quickest way.
        future.__dict__ = {"_condition": condition, "_state": PENDING, "_result": None,
                           "_exception": None, "_waiters": [], "_done_callbacks": [],
                           "metadata": metadata, "_withdraw": None}
        return future

    def result(self, timeout: float | None = None) -> T:
        """The call's return value, as :meth:`concurrent.futures.Future.result`."""
        if self._state == _FINISHED and self._exception is None:
            return cast(T, self._result)  # final, set before it: no lock (map's case)
        self._wait(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The call's exception, as :meth:`concurrent.futures.Future.exception`."""
        self._wait(timeout)
        return super().exception(0)

    def _wait(self, timeout: float | None) -> None:
        """Wait until done or ``timeout``; the stdlib waits once and takes any wake-up for
        its own, which a lock shared with other futures (:meth:`sharing`) breaks."""
        if self._state in _DONE:  # final: no lock needed
            return
        with self._condition:
            self._condition.wait_for(lambda: self._state in _DONE, timeout)

    def cancel(self) -> bool:
        """Cancel the call unless a worker has started it; return whether it is cancelled.

        A call waiting in the client, or in a batch queued for a worker that has not started
        it, is cancelled (its batch is revoked, so it never runs).
        """
        if self._state == _FINISHED:
            # Final, so reading it unlocked is safe; map() cancels every future it yields
            # once more, which must not cost a lock.
            return False
        withdraw = self._withdraw
        if withdraw is None:
            return super().cancel()
        # It cancels (through the callback) under its batch's lock, or says the call started.
        return withdraw(self.metadata.item_id, super().cancel)

    def _invoke_callbacks(self) -> None:
        # The stdlib logs an Exception and goes on, but lets SystemExit or KeyboardInterrupt
        # escape, which would end the thread that resolves every future of the executor.
        if not self._done_callbacks:  # type: ignore[attr-defined]
            return  # the common case, without a thread-local lookup per future
        if not getattr(_shielded, "on", False):
            super()._invoke_callbacks()  # type: ignore[misc]
            return
        for callback in self._done_callbacks:  # type: ignore[attr-defined]
            try:
                callback(self)
            except BaseException:
                _LOGGER.exception("exception calling callback for %r", self)

    def cancelled_now(self) -> bool:
        """:meth:`cancelled` without taking the future's lock (a snapshot either way; the
        manager checks thousands of futures at a time)."""
        return self._state in _CANCELLED

    def __repr__(self) -> str:
        base = super().__repr__()
        return base[:-1] + f" batch={self.metadata.batch_id}>" if self.metadata.batch_id else base

    def __class_getitem__(cls, item: Any) -> Any:  # typing support on 3.10 as well
        return cls


# -- many at once ------------------------------------------------------------------------------
# A map's futures share their lock (StarburstFuture.sharing): the manager starts and resolves
# thousands at a time under one acquisition of it, with one notify_all, where the stdlib's
# methods take it and notify once per future.  Each does what the stdlib's method does.


_lock: Callable[[Future[Any]], threading.Condition] = operator.attrgetter("_condition")


def start_all(futures: Iterable[StarburstFuture[Any]]) -> None:
    """``set_running_or_notify_cancel()`` of each of ``futures``: PENDING ones become RUNNING;
    the others go through the stdlib's method (a cancelled one is notified)."""
    for condition, run in itertools.groupby(futures, key=_lock):
        others = []
        with condition:
            for future in run:
                if future._state == PENDING:
                    future._state = RUNNING
                else:
                    others.append(future)
        for future in others:
            future.set_running_or_notify_cancel()


def finish_all(futures: Sequence[StarburstFuture[Any]], values: Sequence[Any]) -> None:
    """``set_result(value)`` of each of ``futures`` with its value, but of one done already
    (cancelled, or resolved by an earlier attempt), which keeps its state."""
    each_value = iter(values)
    for condition, run in itertools.groupby(futures, key=_lock):
        finished = []
        with condition:
            for future in run:
                value = next(each_value)
                if future._state in _DONE:
                    continue
                future._result = value
                future._state = FINISHED
                for waiter in future._waiters:  # wait() and as_completed()
                    waiter.add_result(future)
                finished.append(future)
            condition.notify_all()
        for future in finished:
            future._invoke_callbacks()
