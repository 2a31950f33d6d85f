"""Worker bookkeeping: launch workers (with backoff), assign them batches, notice the ones that
stopped or hang, stop them, and say why one lost its batch.

A worker is launched first and assigned after (``assign/<worker id>/<seq>``): it boots while
its first batch is pickled and uploaded, and polls for that assignment like for any other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from .. import _auth, _keys, payload
from .._initializer import pickle_initializer
from ..config import Config
from ..errors import LaunchError, WorkerLost
from ..launch.base import LaunchFailure, Launcher, TaskHandle, TaskPhase, TaskState, WorkerSpec
from ..storage import ObjectStore
from .batches import ASSIGNED, CLAIMED, Batch
from .fanout import Fanout
from .ledger import Ledger

__all__ = ["Worker", "Workers"]


@dataclasses.dataclass(eq=False)
class Worker:
    """One launched worker, as the manager sees it."""

    worker_id: str
    launched_at: float
    handle: TaskHandle | None = None
    seq: int = 0
    batch: Batch | None = None  # the one it runs (or is about to claim)
    queued: Batch | None = None  # at most one behind it, revocable until claimed
    warm: bool = False  # it has sent results, so it is running
    started: bool = False  # seen RUNNING (or STOPPED): it may have claimed or written by now
    idle_since: float | None = None
    stop_reason: str | None = None
    calls_left: int | None = None  # before max_tasks_per_child retires it (None: no limit)
    last_end: float | None = None  # when its last call seen finished (its clock)
    pace: float = 1.0  # its calls' durations over their functions' estimates (a slow host: >1)
    functions: set[str] = dataclasses.field(default_factory=set)  # the digests it was sent


class Workers:
    """The workers of one executor (the manager thread's only).

    Args:
        store: where assignments are written.
        launcher: starts, polls and stops workers.
        config: ``start_timeout``, ``task_timeout``, ``idle_timeout`` and ``max_retries``.
        max_workers: the most workers at once, before the launcher's own ``capacity``.
        ledger: opens and ends each worker's billed span.
        secret: the session secret: signs assignments; each worker gets it in its environment.
    """

    def __init__(self, store: ObjectStore, launcher: Launcher, config: Config,
                 max_workers: int, ledger: Ledger, *, secret: bytes,
                 fanout: Fanout | None = None) -> None:
        self._store = store
        self._fanout = fanout or Fanout(store)
        self._writes: list[tuple[str, bytes]] | None = None  # held by together()
        self._secret = secret
        self._launcher = launcher
        self._config = config
        self._max_workers = max_workers
        self._ledger = ledger
        self.poll_min, self.poll_max = launcher.poll_interval
        self._flush_interval = min(2.0, max(0.1, self.poll_max / 2))
        self._workers: dict[str, Worker] = {}
        self._next_worker = 0
        self.news = False  # a worker was first seen running since the manager last looked
        self._capacity: int | None = None
        self._launch_not_before = 0.0
        self._polled_at = float("-inf")
        self._launch_backoff = 0.0
        self._launch_failing_since: float | None = None
        # (initializer, initargs) of every worker, put in the store at the first launch.
        self.initializer: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
        self._initializer_key: str | None = None

    def __len__(self) -> int:
        return len(self._workers)

    def get(self, worker_id: str) -> Worker | None:
        return self._workers.get(worker_id)

    @property
    def share(self) -> int:
        """How many workers the remaining work is planned for."""
        return self._capacity or self._max_workers

    def live(self) -> list[Worker]:
        """The workers not being stopped."""
        return [w for w in self._workers.values() if w.stop_reason is None]

    def usable(self, live: list[Worker]) -> list[Worker]:
        # A worker idle for long is about to exit: give the work to a fresh worker instead.
        now = time.monotonic()
        limit = self._config.idle_timeout / 2
        return [w for w in live if w.idle_since is None or now - w.idle_since <= limit]

    def may_launch(self) -> bool:
        return time.monotonic() >= self._launch_not_before

    def room(self, live: int) -> int:
        """How many more workers may run now."""
        if self._capacity is None:
            self._capacity = max(1, self._launcher.capacity(self._max_workers))
        return self._capacity - live

    # -- launch and assign ------------------------------------------------------------------

    def launch(self, count: int) -> tuple[list[Worker], LaunchError | None]:
        """Start ``count`` workers; return those started and an error to fail the work with,
        if workers cannot be started at all."""
        if self.initializer is not None and self._initializer_key is None:
            key, data = pickle_initializer(*self.initializer, secret=self._secret)
            self._store.put(key, data)
            self._initializer_key = key
        first, self._next_worker = self._next_worker, self._next_worker + count
        new = [Worker(f"w{i:05d}", time.monotonic(), calls_left=self._config.max_tasks_per_child)
               for i in range(first, first + count)]
        results = self._launcher.launch([WorkerSpec(w.worker_id, self._env(w)) for w in new])
        error = None
        for worker, result in zip(new, results):
            if isinstance(result, TaskHandle):
                worker.handle = result
                self._workers[worker.worker_id] = worker
                self._launch_backoff = 0.0
                self._launch_failing_since = None
                self._ledger.open_span(worker.worker_id)
            else:
                error = self._launch_failed(result) or error
        return [w for w in new if w.handle is not None], error

    def _launch_failed(self, failure: LaunchFailure) -> LaunchError | None:
        if not failure.retryable:  # nothing can start a worker: fail the work waiting for one
            return None if self._workers else LaunchError(
                f"worker {failure.worker_id} could not be started: {failure.reason}")
        now = time.monotonic()
        start_timeout = self._config.start_timeout
        if self._launch_failing_since is None:
            self._launch_failing_since = now
        elif not self._workers and now - self._launch_failing_since > start_timeout:
            # Transient or not, no worker for this long: say so rather than wait forever.
            since, self._launch_failing_since = self._launch_failing_since, None
            return LaunchError(f"no worker could be started for {now - since:.0f} s "
                               f"(start_timeout={start_timeout:g}s): {failure.reason}")
        self._launch_backoff = min(max(2 * self._launch_backoff, self.poll_max), 60.0)
        self._launch_not_before = now + self._launch_backoff * random.uniform(0.8, 1.2)
        return None

    def _env(self, worker: Worker) -> dict[str, str]:
        env = {} if self._initializer_key is None else {
            _keys.ENV_INITIALIZER: self._initializer_key}
        return env | {
            _keys.ENV_STORE_URL: self._store.url,
            _keys.ENV_WORKER_ID: worker.worker_id,
            _keys.ENV_IDLE_TIMEOUT: f"{self._config.idle_timeout:g}",
            _keys.ENV_FLUSH_INTERVAL: f"{self._flush_interval:g}",
            _keys.ENV_POLL_MIN: f"{self.poll_min:g}",
            _keys.ENV_POLL_MAX: f"{self.poll_max:g}",
            _keys.ENV_CAPTURE_OUTPUT: "1" if self._config.forward_output else "0",
            _keys.ENV_MAX_RESULT_SIZE: str(self._config.max_result_size),
            # The one secret in a worker's environment (see DESIGN invariant 9): never logged.
            _auth.ENV_SECRET: _auth.secret_to_env(self._secret),
        }

    def assign(self, worker: Worker, batch: Batch, *, rerun: bool = False,
               expected: float | None = None) -> None:
        """Write the worker's next assignment (behind the batch it runs, if any): the batch's
        next attempt (``rerun``: a copy of one started), to run ``expected`` s, if known."""
        with batch.lock:  # so that no cancel() slips between the skip list and the claim state
            batch.drop_cancelled()
            batch.attempt += 1
            batch.worker = worker
            batch.assigned_at = time.monotonic()
            batch.claim = CLAIMED if rerun else ASSIGNED
            batch.queued = worker.batch is not None
            order = _order(worker, batch, expected or 0.0)
            key = _keys.assign_key(worker.worker_id, worker.seq)
            data = order.encode(key=key, secret=self._secret)
            if self._writes is None:
                self._store.put(key, data)
            else:
                self._writes.append((key, data))  # revocable meanwhile, as once written
        worker.seq += 1
        if worker.batch is None:
            worker.batch = batch
        else:
            worker.queued = batch
        worker.idle_since = None
        if worker.calls_left is not None:
            worker.calls_left -= len(batch.futures)  # the calls it runs: not those in skip
        for future in batch.futures.values():
            future.metadata.attempts = batch.attempt
            future.metadata.worker_id = worker.worker_id

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Hold the assignments made in this block and write them side by side as it ends
        (a remote store's round trips overlap)."""
        self._writes = []
        try:
            yield
        finally:
            writes, self._writes = self._writes, None
        self._fanout.each(lambda write: self._store.put(*write), writes)

    def release(self, worker: Worker, batch: Batch) -> None:
        """``batch`` no longer needs ``worker``: its queued batch, if any, moves up."""
        if worker.queued is batch:
            worker.queued = None
        elif worker.batch is batch:
            worker.batch, worker.queued = worker.queued, None
            if worker.batch is None:
                worker.idle_since = time.monotonic()

    def unclaimed(self) -> list[Batch]:
        """The batches workers should be running by now but have not been seen to claim (a
        worker still starting claims nothing: no LIST for it)."""
        return [w.batch for w in self._workers.values()
                if w.batch is not None and w.batch.claim == ASSIGNED and (w.started or w.warm)]

    def any_started(self) -> bool:
        """Whether a worker with a batch may have written results: until one was seen
        RUNNING, looking for results (a LIST each turn, through a cold start) finds none."""
        return any(w.started or w.warm for w in self._workers.values() if w.batch is not None)

    # -- watch and stop ---------------------------------------------------------------------

    def watch(self) -> list[tuple[Worker, TaskState]]:
        """Poll the workers holding a batch; stop those that hang; return those that stopped."""
        watched = [w for w in self._workers.values()
                   if w.handle is not None and (w.batch or w.stop_reason is not None)]
        if not watched:
            self._forget_idle()
            return []
        now = time.monotonic()
        if now - self._polled_at < self.poll_min:
            return []  # task states at most every shortest poll: results and claims tell more
        self._polled_at = now
        states = self._launcher.poll([w.handle for w in watched if w.handle is not None])
        start_timeout, task_timeout = self._config.start_timeout, self._config.task_timeout
        stopped: list[tuple[Worker, TaskState]] = []
        for worker, state in zip(watched, states):
            if not worker.started and state.phase is not TaskPhase.PENDING:
                worker.started = self.news = True  # look for its claim and results soon
            if state.phase is TaskPhase.STOPPED:
                stopped.append((worker, state))
            elif state.phase is TaskPhase.PENDING and not worker.warm:
                if now - worker.launched_at > start_timeout:
                    self.stop(worker, f"did not start within start_timeout={start_timeout:g}s")
            elif task_timeout is not None and worker.batch is not None:
                if worker.batch.claim == CLAIMED and now - worker.batch.claimed_at > task_timeout:
                    self.stop(worker, f"batch {worker.batch.batch_id} ran past "
                                      f"task_timeout={task_timeout:g}s")
        return stopped

    def _forget_idle(self) -> None:
        # An idle worker exits by itself after idle_timeout; stop tracking it a bit later.
        idle_timeout = self._config.idle_timeout
        limit = idle_timeout + 5 * self.poll_max
        now = time.monotonic()
        for worker in list(self._workers.values()):
            if worker.idle_since is not None and now - worker.idle_since > limit:
                del self._workers[worker.worker_id]
                self._ledger.end_span(worker.worker_id,
                                      time.time() - (now - worker.idle_since) + idle_timeout)

    def gone(self, worker: Worker, state: TaskState) -> None:
        """Forget a worker that stopped."""
        self._workers.pop(worker.worker_id, None)
        self._ledger.end_span(worker.worker_id, state.stopped_at)

    def retire_if_spent(self, worker: Worker) -> None:
        """Retire ``worker`` if it ran its ``max_tasks_per_child`` calls."""
        if worker.calls_left == 0 and worker.stop_reason is None:
            self.retire(worker, f"max_tasks_per_child={self._config.max_tasks_per_child} "
                                "calls done")

    def retire(self, worker: Worker, reason: str) -> None:
        """Tell an idle worker to exit (a stop order, its next assignment): it takes no more
        work and a fresh worker takes over.  It is watched until it stopped."""
        key = _keys.assign_key(worker.worker_id, worker.seq)
        self._store.put(key, payload.Assignment(stop=True).encode(key=key, secret=self._secret))
        worker.seq += 1
        worker.stop_reason = reason

    def stop(self, worker: Worker, reason: str) -> None:
        worker.stop_reason = reason
        if worker.handle is not None:
            self._launcher.stop([worker.handle], reason)

    def stop_all(self, reason: str) -> None:
        """Stop every worker now and forget them."""
        handles = [w.handle for w in self._workers.values() if w.handle is not None]
        for worker in self._workers.values():
            worker.stop_reason = reason
        self._launcher.stop(handles, reason)
        for worker_id in self._workers:
            self._ledger.end_span(worker_id)
        self._workers.clear()

    # -- why a batch was lost ---------------------------------------------------------------

    def lost_error(
        self, batch: Batch, worker: Worker, state: TaskState | None, why: str | None
    ) -> WorkerLost:
        """The error for the futures of a batch lost with no retry left: what the worker did."""
        tail = self._launcher.log_tail(worker.handle) if worker.handle is not None else ""
        exit_code = state.exit_code if state else None
        details = [why or "it stopped before finishing its batch"]
        if worker.stop_reason:
            details.append(f"stopped by the executor: {worker.stop_reason}")
        if state is not None:
            details.append(f"exit code {exit_code}")
            if state.stop_code:
                details.append(f"stop code {state.stop_code}")
            if state.stopped_reason:
                details.append(state.stopped_reason)
        hint = ""
        reason_text = (state.stopped_reason or "").lower() if state else ""
        if exit_code in (137, -9) or "memory" in reason_text:
            hint = " If it ran out of memory, give workers more (memory=...) or smaller batches."
        message = (
            f"worker {worker.worker_id} lost batch {batch.batch_id} ({len(batch.futures)} calls "
            f"unfinished) after {batch.attempt} attempt(s), no retry left "
            f"(max_retries={self._config.max_retries}): {'; '.join(details)}.{hint}"
        )
        if tail:
            message += "\nlast lines of its log:\n" + tail
        return WorkerLost(
            message,
            worker_id=worker.worker_id,
            batch_id=batch.batch_id,
            attempts=batch.attempt,
            exit_code=exit_code,
            stop_code=state.stop_code if state else None,
            stopped_reason=state.stopped_reason if state else None,
            log_tail=tail,
        )


def _order(worker: Worker, batch: Batch, expected: float) -> payload.Assignment:
    """The assignment of ``batch``'s next attempt to ``worker``: with its function, if small
    and the worker's first of it."""
    sent = batch.digest in worker.functions
    worker.functions.add(batch.digest)
    return payload.Assignment(batch.batch_id, batch.attempt, frozenset(batch.done_ids),
                              batch=batch.body, expected=expected,
                              function=b"" if sent else batch.function)
