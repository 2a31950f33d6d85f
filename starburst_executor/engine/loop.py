"""The manager thread: the one owner of every hand-off between the client and the workers.

::

    submit()/map() --lock--> Intake.pending --wake--> [manager thread, one per executor]
                                                          |  each turn, woken or after a poll
                                                          |  interval (backoff while idle):
      _collect:   one LIST of results/ --> GET each new part (ResultReader) --> resolve futures,
                  free the worker
      _watch:     launcher.poll (workers with a batch) --> one stopped with its batch unfinished:
                  retry the batch (up to max_retries) or fail its futures with WorkerLost;
                  one past start_timeout or task_timeout: stop it
      _dispatch:  requeue batches revoked by cancel(); one LIST of claims/ while a worker's
                  batch is not known to be claimed (its futures become RUNNING once it is);
                  Dispatcher: a free worker --> the next batch --> assign/<worker>/<seq>, and
                  one batch queued behind each started one; no work left --> an idle worker
                  takes over a queued batch (revoked) or reruns a straggler
                  work left and room --> launch new workers, THEN assign each a batch
                  (a worker boots while its batch is pickled and uploaded; it polls assign/)
      next batch: a batch to retry, or Batcher: pending calls of one function --planner-->
                  calls, each one's arguments pickled once --> functions/<sha256> (once per
                  hash), batches/<id>
      _guard_cost, _heartbeat: stop every worker at max_cost; refresh session.json

``submit`` and ``shutdown`` only change :class:`~.intake.Intake` under its lock and wake this
thread.  Futures never leave the client; only keys travel to workers (and the session's
secret, in their environment, see ``_auth``).  The parts:
``batches`` (form, pickle, upload), ``dispatch`` (who runs what), ``claims`` (revocable until
claimed), ``workers`` (launch, assign, watch, stop), ``ledger`` (billed spans, max_cost, usage).

Where cancelling stops: a call can be cancelled while it waits in ``Intake.pending``, in a
batch being formed, and in a batch assigned to a worker that has not claimed it (``cancel()``
revokes that batch; its other calls go to the next free worker).  Once a worker claims its
batch, its futures are RUNNING and ``cancel()`` returns False; ``shutdown(cancel_futures=True)``
lets those finish and cancels the rest.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import threading
import time
import weakref
from concurrent.futures import CancelledError
from collections.abc import Callable
from typing import Any

from .. import _auth, _gc, _keys, payload
from .._future import shield_callbacks
from ..config import Config
from ..errors import (
    ExecutorBroken,
    InitializerFailed,
    IntegrityError,
    StarburstError,
    StoreError,
)
from ..launch.base import Launcher, TaskState
from ..planner import BatchPolicy
from ..storage import ObjectStore
from .batches import Batch, Batcher
from .claims import Claims
from .dispatch import Dispatcher
from .fanout import Fanout
from .intake import Intake
from .ledger import Ledger, Usage
from .results import ResultReader, settle_records
from .workers import Worker, Workers

__all__ = ["Manager", "Settings"]

_HEARTBEAT_SECONDS = 60.0
# A batch this small travels inside its assignment: one PUT and one GET fewer per batch, where
# requests are billed (a local store keeps every batch as its own object).
_INLINE_BATCH_BYTES = {"fargate": 64 * 1024}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the manager thread is told once: whose session, how many workers, which limits.

    ``config`` gives the timeouts, ``max_retries`` and what ``session.json`` records.
    ``delete_session``: remove the session's objects at the end (a private temporary store).
    ``launch_all``: start every worker at the first launch (local workers, billed nothing),
    so later work does not wait for a cold start.
    ``secret``: signs and checks every object (payload's MAC); kept in memory, never stored.
    ``initializer``: ``(initializer, initargs)`` that every worker runs before its first call.
    """

    session_id: str
    max_workers: int
    policy: BatchPolicy
    config: Config
    delete_session: bool = False
    launch_all: bool = False
    secret: bytes = dataclasses.field(default_factory=_auth.new_secret, repr=False)
    initializer: tuple[Callable[..., Any], tuple[Any, ...]] | None = None


class Manager(threading.Thread):
    """Runs the pipeline for one executor; see the module docstring."""

    def __init__(self, executor: object, intake: Intake, store: ObjectStore,
                 launcher: Launcher, ledger: Ledger, settings: Settings) -> None:
        super().__init__(name=f"starburst-manager-{settings.session_id}", daemon=True)
        # A weak reference, so an executor dropped without shutdown() is noticed (and so this
        # thread does not keep it alive); the callback wakes the loop to finish up.
        self._executor_ref = weakref.ref(executor, lambda _: intake.wake())
        self._intake = intake
        self._store = store
        self._launcher = launcher
        self._ledger = ledger
        self._settings = settings
        self._config = settings.config
        self._batcher = Batcher(intake, store, settings.policy, secret=settings.secret,
                                max_size=settings.config.max_result_size)
        self._batcher.inline_max = _INLINE_BATCH_BYTES.get(settings.config.backend, 0)
        # A worker running nothing looks for work at best every poll_min: a hand-off's least.
        self._batcher.estimates.handoff = max(settings.policy.overhead_seconds,
                                              launcher.poll_interval[0])
        self._fanout = Fanout(store)  # round trips side by side on a remote store
        self._workers = Workers(store, launcher, settings.config, settings.max_workers, ledger,
                                secret=settings.secret, fanout=self._fanout)
        self._workers.initializer = settings.initializer
        self._claims = Claims(store, intake.wake)
        self._dispatcher = Dispatcher(self._workers, self._batcher, self._claims, ledger,
                                      settings.policy, settings.config.rerun_stragglers)
        self._dispatcher.waiting = self._waiting
        self._inflight: dict[str, Batch] = self._dispatcher.inflight
        self._retry: collections.deque[Batch] = self._dispatcher.retry
        self._results = ResultReader(store, secret=settings.secret, fanout=self._fanout)
        self._session = _SessionRecord(store, settings)

    def usage(self, calls: int) -> Usage:
        """What this executor did so far (from any thread)."""
        return self._ledger.usage(calls, self._store.stats, self._launcher.stats)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        shield_callbacks()  # a done-callback that raises must not stop this thread
        try:
            self._loop()
        except BaseException as exc:  # a bug or a store that stopped answering
            self._break(exc)
        finally:
            self._close()

    def _loop(self) -> None:
        poll_min, poll_max = self._workers.poll_min, self._workers.poll_max
        delay = poll_min
        while True:
            busy = bool(self._inflight or self._has_work())
            # Nothing in flight: sleep until a submit or shutdown wakes us (no polling cost).
            self._intake.wakeup.wait(delay if busy else _HEARTBEAT_SECONDS)
            self._intake.wakeup.clear()
            if self._intake.terminate_reason is not None:
                self._terminate(self._intake.terminate_reason)
                return
            # No LIST of results while every worker with a batch is still starting.
            started = self._workers.any_started()
            progress = self._collect() if started else False
            progress |= self._watch(looked=started)
            progress |= self._dispatch()
            self._guard_cost()
            if len(self._workers):
                self._session.heartbeat()
            if self._finished():
                return
            if progress:
                delay = poll_min
            else:
                delay = min(delay * 1.6, poll_max) * random.uniform(0.9, 1.1)
            due = self._dispatcher.next_due()  # e.g. a batch expected to end: right after
            if due is not None:
                delay = min(delay, due)

    def _waiting(self) -> int:
        with self._intake.lock:
            pending = len(self._intake.pending)
        return pending + self._batcher.carried + sum(len(b.futures) for b in self._retry)

    def _has_work(self) -> bool:
        return bool(self._retry or self._batcher.carried or self._intake.pending)

    def _finished(self) -> bool:
        if self._inflight or self._retry or self._batcher.carried:
            return False
        with self._intake.lock:
            if self._intake.pending:
                return False
            return self._intake.shutdown or self._executor_ref() is None

    # -- results ----------------------------------------------------------------------------

    def _collect(self) -> bool:
        # Whether a part changed what workers hold (a batch ended or lost; a first part: claim,
        # durations): only then look again soon; a running batch's parts come at its pace.
        if not self._inflight:
            return False
        inflight, changed = len(self._inflight), False
        for key in self._results.look(min(self._inflight)):
            try:
                batch_id, attempt, _ = _keys.parse_result_key(key)
            except ValueError:
                continue  # no worker writes such a name: not this session's
            batch = self._inflight.get(batch_id)
            if batch is None:
                continue
            changed |= attempt != batch.seen_attempt
            part = self._results.read(key)
            if isinstance(part, payload.ResultPart):
                self._apply(batch, part)
            elif isinstance(part, (IntegrityError, StoreError)):
                self._bad_part(batch, attempt, part)
            else:
                self._fail_batch(batch, part)
        return changed or len(self._inflight) != inflight

    def _bad_part(self, batch: Batch, attempt: int, error: StarburstError) -> None:
        """A part of ``batch`` that cannot be trusted or read: the attempt that wrote it is lost
        (retried, or its futures fail with ``error``); the other batches never notice."""
        if attempt != batch.attempt or batch.worker is None:
            return  # an earlier attempt's: the batch runs again already
        self._batch_lost(batch, batch.worker, None, f"{type(error).__name__}: {error}", error)

    def _apply(self, batch: Batch, part: payload.ResultPart) -> None:
        worker = self._workers.get(part.worker_id)
        if worker is not None:
            worker.warm = True
        self._dispatcher.observe(batch, part, worker)
        for record in part.records:
            if record.item_id == payload.WHOLE_BATCH:
                _, error = payload.decode_result(record)
                if isinstance(error, InitializerFailed):
                    raise error  # breaks the executor, as ProcessPoolExecutor's
                if isinstance(error, IntegrityError):
                    self._batcher.forget_uploads()  # a function object may be bad: send anew
                for future in batch.futures.values():
                    future.metadata.worker_id = part.worker_id
                    future.metadata.attempts = batch.attempt
                self._intake.settle_all(batch.futures.values(), error)
                batch.futures.clear()
                break
        with _gc.paused(len(part.records) > 1000):  # see _gc
            settle_records(batch, part, self._intake)
        if not batch.futures:
            self._dispatcher.complete(batch, part.worker_id)
        elif part.final and part.attempt == batch.attempt and batch.worker is not None:
            # The worker says it finished, yet calls are missing: treat the attempt as lost.
            self._batch_lost(batch, batch.worker, None, "finished without all its results")

    def _fail_batch(self, batch: Batch, error: BaseException) -> None:
        self._intake.settle_all(batch.futures.values(), error)
        batch.futures.clear()
        self._dispatcher.complete(batch)

    # -- lost workers -----------------------------------------------------------------------

    def _watch(self, looked: bool) -> bool:
        stopped = self._workers.watch()
        if not stopped:
            news, self._workers.news = self._workers.news, False
            if news and not looked:  # seen running a poll late: its first calls may be done
                self._collect()
            return news  # a worker started: its results come soon, so look again soon
        self._collect()  # a worker may have written its last results just before it stopped
        for worker, state in stopped:
            self._workers.gone(worker, state)
            queued = worker.queued
            if worker.batch is not None:
                self._batch_lost(worker.batch, worker, state, None)
            if queued is not None and queued.worker is worker:
                if not self._claims.revoke(queued):  # it had started there
                    self._batch_lost(queued, worker, state, None)
                else:  # revoked, so it never starts there: not the batch's fault
                    self._inflight.pop(queued.batch_id, None)
                    self._claims.requeue(queued)
                    self._retry.append(queued)  # behind the batch that worker was running
        return True

    def _batch_lost(
        self, batch: Batch, worker: Worker, state: TaskState | None, why: str | None,
        error: BaseException | None = None,
    ) -> None:
        self._workers.release(worker, batch)
        if not batch.futures:
            self._dispatcher.complete(batch)
            return
        if batch.other is not None:  # a straggler's other copy still runs: it carries on
            if batch.worker is worker:
                batch.worker = batch.other
            batch.other = None
            return
        # Not the batch's fault: the platform took the worker away, or the worker exited idle
        # (exit code 0) before it read this assignment.
        batch.count_loss(state is not None and worker.stop_reason is None and (
            state.interrupted or state.exit_code == 0))
        if batch.failures > self._config.max_retries:
            self._fail_batch(batch, error or self._workers.lost_error(batch, worker, state, why))
            return
        self._ledger.retries += 1
        self._inflight.pop(batch.batch_id, None)
        self._claims.requeue(batch)
        self._retry.append(batch)

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self) -> bool:
        progress = self._dispatcher.take_back_revoked()
        if self._intake.cancel_queued:
            self._intake.cancel_queued = False
            self._dispatcher.cancel_unstarted()
        self._claims.look(self._workers.unclaimed())
        live = self._workers.live()
        with self._workers.together():  # this turn's assignments go out side by side
            progress |= self._dispatcher.fill(self._workers.usable(live), self._has_work(),
                                              self._workers.room(len(live)) <= 0)
            if self._has_work() and self._workers.may_launch():
                progress |= self._launch_workers(len(live))
        return progress

    def _launch_workers(self, live: int) -> bool:
        room = self._workers.room(live)
        with self._intake.lock:
            waiting = len(self._intake.pending)
        wanted = min(room, waiting + self._batcher.carried + len(self._retry))
        if self._settings.launch_all:
            wanted = room  # workers that cost nothing idle: start them all, as the stdlib does
        wanted, too_dear = self._ledger.affordable(wanted, live > 0)
        if too_dear is not None:
            self._drain(too_dear, cancel_pending=False)
        if wanted <= 0:
            return False
        self._session.write()
        started, error = self._workers.launch(wanted)
        if error is not None:
            self._drain(error, cancel_pending=False)
        # Launched first, assigned now: each boots while its batch is pickled and uploaded.
        for worker in started:
            if not self._dispatcher.assign_next(worker):
                break
        return True

    def _guard_cost(self) -> None:
        if not self._ledger.billing:
            return
        _, spent = self._ledger.billed()
        if self._intake.progress is not None and spent is not None:
            self._intake.progress.set_info(cost=f"${spent:.2f}")
        error = self._ledger.over_limit(spent)
        if error is None or not len(self._workers):
            return
        # Running workers reached the limit: stop them rather than bill past it.
        self._workers.stop_all(f"max_cost=${self._config.max_cost:.2f} reached")
        self._drain(error, cancel_pending=False)

    # -- endings ----------------------------------------------------------------------------

    def _terminate(self, reason: str) -> None:
        """Stop now: cancel what waits, fail what runs (workers are stopped in ``_close``)."""
        self._drain(CancelledError(f"the executor was stopped ({reason}) before this call "
                                   "finished"), cancel_pending=True)

    def _break(self, exc: BaseException) -> None:
        text, error = _why_broken(exc)
        with self._intake.lock:
            self._intake.broken = text
            self._intake.broken_by = error
        self._drain(error, cancel_pending=False)

    def _drain(self, error: BaseException, *, cancel_pending: bool) -> None:
        with self._intake.lock:
            pending = list(self._intake.pending)
            self._intake.pending.clear()
        for item in pending:
            if cancel_pending:
                if item.future.cancel() and self._intake.progress is not None:
                    self._intake.progress.done()
            elif item.future.set_running_or_notify_cancel():
                self._intake.settle(item.future, False, error)
        self._batcher.drain(error)
        for batch in list(self._inflight.values()) + list(self._retry):
            self._fail_batch(batch, error)
        self._retry.clear()

    def _close(self) -> None:
        try:
            self._launcher.close()
            self._ledger.end_all()
        finally:
            try:
                if self._settings.delete_session:
                    self._store.delete_prefix("")
            finally:
                self._fanout.close()
                self._store.close()
                if self._intake.progress is not None:
                    self._intake.progress.close()


class _SessionRecord:
    """``session.json``: who runs this session and since when (for status and cleanup)."""

    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._created = time.time()
        self._written = False
        self._last = 0.0

    def _doc(self) -> bytes:
        config = self._settings.config
        return json.dumps({
            "session_id": self._settings.session_id,
            "backend": config.backend,
            "created": self._created,
            "heartbeat": time.time(),
            "python": payload.PYTHON_MINOR,
            "max_workers": self._settings.max_workers,
            "cpu": config.cpu,
            "memory": config.memory,
        }).encode()

    def write(self) -> None:
        """Write it before the first worker starts."""
        if not self._written:
            self._store.put(_keys.SESSION, self._doc())
            self._written = True
            self._last = time.monotonic()

    def heartbeat(self) -> None:
        """Refresh it now and then while workers run."""
        if self._written and time.monotonic() - self._last > _HEARTBEAT_SECONDS:
            self._store.put(_keys.SESSION, self._doc())
            self._last = time.monotonic()


def _why_broken(exc: BaseException) -> tuple[str, ExecutorBroken]:
    """(why the executor broke, the error its futures and later submits get) for ``exc``."""
    if isinstance(exc, ExecutorBroken):  # says itself why (InitializerFailed)
        return str(exc), exc
    if isinstance(exc, StarburstError):
        text = f"{type(exc).__name__}: {exc}"
    else:
        text = f"internal error {type(exc).__name__}: {exc} (please report it)"
    error = ExecutorBroken(f"the executor stopped working: {text}")
    error.__cause__ = exc
    return text, error
