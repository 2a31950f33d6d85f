"""The manager thread: the one owner of every hand-off between the client and the workers.

::

    submit()/map() --lock--> Intake.pending --wake--> [manager thread, one per executor]
                                                          |
      _dispatch:  pending calls --planner--> batch --pickle--> functions/<sha256> (once per hash)
                  |                                          batches/<id>
                  +--> assign/<worker>/<seq> for a live worker with a free slot (warm reuse)
                  +--> or a new worker, launched with its first assignment already written
      _collect:   one LIST of results/ --> GET each new part --> resolve futures
      _watch:     launcher.poll --> a worker stopped with its batch unfinished: retry it
                                    (up to max_retries) or fail their futures with WorkerLost

``submit`` and ``shutdown`` only change :class:`Intake` under its lock and wake this thread.
Futures never leave the client; only keys travel to workers.

Where cancelling stops: a call can be cancelled while it waits in ``Intake.pending``.  Once the
manager puts it in a batch (which is then uploaded and assigned), its future is RUNNING and
``cancel()`` returns False; a later ``shutdown(cancel_futures=True)`` lets it finish.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError, InvalidStateError
from typing import Any

from . import _keys, payload
from ._future import StarburstFuture
from ._progress import ProgressBar
from .config import Config
from .errors import (
    CostLimitExceeded,
    ExecutorBroken,
    LaunchError,
    SerializationError,
    StarburstError,
    WorkerLost,
)
from .launch.base import LaunchFailure, Launcher, TaskHandle, TaskPhase, TaskState, WorkerSpec
from .planner import BatchPolicy, next_batch_size, split_by_bytes
from .storage import ObjectStore
from .worker import WHOLE_BATCH

__all__ = ["Intake", "WorkItem", "Manager", "Usage"]

# A batch lost for a reason that is not its fault (Spot interruption, a worker that exited
# idle just as work was assigned to it) is retried without using up a retry, this many times.
_FREE_RETRIES = 5
_HEARTBEAT_SECONDS = 60.0


@dataclasses.dataclass(eq=False, slots=True)
class WorkItem:
    """A call that stays local until it is batched: the future and what to pickle."""

    item_id: int
    future: StarburstFuture[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    chunksize: int | None = None


class Intake:
    """State shared by the executor (any thread) and its manager, guarded by ``lock``."""

    def __init__(self, progress: ProgressBar | None) -> None:
        self.lock = threading.Lock()
        self.wakeup = threading.Event()
        self.pending: collections.deque[WorkItem] = collections.deque()
        self.shutdown = False
        self.terminate_reason: str | None = None
        self.broken: str | None = None
        self.next_id = 0
        self.progress = progress

    def wake(self) -> None:
        self.wakeup.set()


@dataclasses.dataclass(eq=False)
class _Batch:
    batch_id: str
    futures: dict[int, StarburstFuture[Any]]  # the unresolved ones
    done_ids: set[int] = dataclasses.field(default_factory=set)
    attempt: int = 0
    failures: int = 0  # attempts lost that count against max_retries
    free_retries: int = 0
    worker: _Worker | None = None
    assigned_at: float = 0.0


@dataclasses.dataclass(eq=False)
class _Worker:
    worker_id: str
    launched_at: float
    handle: TaskHandle | None = None
    seq: int = 0
    batch: _Batch | None = None  # one at a time, so none waits behind a long call
    warm: bool = False  # it has sent results, so it is running
    idle_since: float | None = None
    stop_reason: str | None = None


@dataclasses.dataclass(frozen=True)
class Usage:
    """What an executor did and used.

    Attributes:
        requests: requests made by the client, by ``"service.operation"`` (store and launcher).
        bytes_uploaded: bytes the client wrote to the store.
        bytes_downloaded: bytes the client read from the store.
        calls: calls submitted.
        batches: batches uploaded.
        retries: batch attempts beyond the first.
        tasks_launched: workers started.
        task_seconds: seconds workers ran (or have run so far), summed, from launch to stop.
        cost: USD billed for those seconds (one-minute minimum per task), or ``None`` where
            nothing is billed (local and docker backends).
    """

    requests: dict[str, int]
    bytes_uploaded: int
    bytes_downloaded: int
    calls: int
    batches: int
    retries: int
    tasks_launched: int
    task_seconds: float
    cost: float | None = None


class Manager(threading.Thread):
    """Runs the pipeline for one executor; see the module docstring."""

    def __init__(
        self,
        executor: object,
        intake: Intake,
        store: ObjectStore,
        launcher: Launcher,
        config: Config,
        *,
        session_id: str,
        max_workers: int,
        policy: BatchPolicy,
        delete_session: bool = False,
        store_name: str = "store",
        launcher_name: str = "launcher",
        price: Callable[[float], float] | None = None,
    ) -> None:
        super().__init__(name=f"starburst-manager-{session_id}", daemon=True)
        # A weak reference, so an executor dropped without shutdown() is noticed (and so this
        # thread does not keep it alive); the callback wakes the loop to finish up.
        self._executor_ref = weakref.ref(executor, lambda _: intake.wake())
        self._intake = intake
        self._store = store
        self._launcher = launcher
        self._config = config
        self._session_id = session_id
        self._max_workers = max_workers
        self._policy = policy
        self._delete_session = delete_session
        self._store_name = store_name
        self._launcher_name = launcher_name
        self._poll_min, self._poll_max = launcher.poll_interval
        self._flush_interval = min(2.0, max(0.1, self._poll_max / 2))

        self._workers: dict[str, _Worker] = {}
        self._inflight: dict[str, _Batch] = {}
        self._retry: collections.deque[_Batch] = collections.deque()
        self._carry: collections.deque[WorkItem] = collections.deque()  # batched, not yet sent
        self._uploaded: set[str] = set()
        self._seen_parts: set[str] = set()
        self._capacity: int | None = None
        self._launch_not_before = 0.0
        self._launch_backoff = 0.0
        self._launch_failing_since: float | None = None
        self._seconds_per_call: float | None = None
        self._bytes_per_call: float | None = None
        self._next_batch = 0
        self._next_worker = 0
        self._last_heartbeat = 0.0
        self._session_written = False
        self._created = time.time()
        # worker id -> [launched at, stopped at or 0.0] (wall clock): what the tasks are billed.
        self._spans: dict[str, list[float]] = {}
        self._price = price
        self._batches = 0
        self._retries = 0
        self._usage_lock = threading.Lock()

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a bug or a store that stopped answering
            self._break(exc)
        finally:
            self._close()

    def _loop(self) -> None:
        delay = self._poll_min
        while True:
            busy = bool(self._inflight or self._retry or self._carry or self._intake.pending)
            # Nothing in flight: sleep until a submit or shutdown wakes us (no polling cost).
            self._intake.wakeup.wait(delay if busy else _HEARTBEAT_SECONDS)
            self._intake.wakeup.clear()
            if self._intake.terminate_reason is not None:
                self._terminate(self._intake.terminate_reason)
                return
            progress = self._collect()
            progress |= self._watch()
            progress |= self._dispatch()
            self._guard_cost()
            self._heartbeat()
            if self._finished():
                return
            if progress:
                delay = self._poll_min
            else:
                delay = min(delay * 1.6, self._poll_max) * random.uniform(0.9, 1.1)

    def _finished(self) -> bool:
        if self._inflight or self._retry or self._carry:
            return False
        with self._intake.lock:
            if self._intake.pending:
                return False
            return self._intake.shutdown or self._executor_ref() is None

    # -- results ----------------------------------------------------------------------------

    def _collect(self) -> bool:
        if not self._inflight:
            return False
        # Batch ids grow, so every part of an unfinished batch sorts after this key.
        oldest = min(self._inflight)
        keys = self._store.list(_keys.RESULTS_PREFIX, start_after=_keys.RESULTS_PREFIX + oldest)
        fresh = [k for k in keys if k not in self._seen_parts]
        for key in fresh:
            self._seen_parts.add(key)
            batch_id, _, _ = _keys.parse_result_key(key)
            batch = self._inflight.get(batch_id)
            if batch is None:
                continue
            try:
                part: payload.ResultPart = payload.load(self._store.get(key), "results")
            except SerializationError as exc:
                # E.g. a worker of another Python version wrote its refusal in its own
                # format: retrying elsewhere would give the same answer.
                self._fail_batch(batch, exc)
                continue
            self._apply(batch, part)
        if len(self._seen_parts) > 4 * len(keys) + 1000:
            self._seen_parts.intersection_update(keys)
        return bool(fresh)

    def _apply(self, batch: _Batch, part: payload.ResultPart) -> None:
        worker = self._workers.get(part.worker_id)
        if worker is not None:
            worker.warm = True
        for record in part.records:
            if record.item_id == WHOLE_BATCH:
                _, error = payload.decode_result(record)
                for item_id in list(batch.futures):
                    self._resolve(batch, item_id, False, error, part, record)
                continue
            if record.item_id not in batch.futures:
                continue  # already resolved by an earlier attempt
            ok, value = payload.decode_result(record)
            self._resolve(batch, record.item_id, ok, value, part, record)
            elapsed = max(0.0, record.finished - record.started)
            spc = self._seconds_per_call
            self._seconds_per_call = elapsed if spc is None else 0.8 * spc + 0.2 * elapsed
        if not batch.futures:
            self._complete(batch)
        elif part.final and part.attempt == batch.attempt and batch.worker is not None:
            # The worker says it finished, yet calls are missing: treat the attempt as lost.
            self._batch_lost(batch, batch.worker, None, "finished without all its results")

    def _resolve(
        self,
        batch: _Batch,
        item_id: int,
        ok: bool,
        value: Any,
        part: payload.ResultPart,
        record: payload.ResultRecord,
    ) -> None:
        future = batch.futures.pop(item_id)
        batch.done_ids.add(item_id)
        meta = future.metadata
        meta.worker_id = part.worker_id
        meta.attempts = batch.attempt
        if record.item_id != WHOLE_BATCH:
            meta.started_at, meta.finished_at = record.started, record.finished
        try:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        except InvalidStateError:
            pass
        if self._intake.progress is not None:
            self._intake.progress.done()

    def _complete(self, batch: _Batch) -> None:
        self._inflight.pop(batch.batch_id, None)
        worker = batch.worker
        if worker is not None and worker.batch is batch:
            worker.batch = None
            worker.idle_since = time.monotonic()

    def _fail_batch(self, batch: _Batch, error: BaseException) -> None:
        for future in batch.futures.values():
            try:
                future.set_exception(error)
            except InvalidStateError:
                pass
            if self._intake.progress is not None:
                self._intake.progress.done()
        batch.futures.clear()
        self._complete(batch)

    # -- workers ----------------------------------------------------------------------------

    def _watch(self) -> bool:
        watched = [w for w in self._workers.values() if w.handle is not None and w.batch]
        if not watched:
            self._forget_idle_workers()
            return False
        states = self._launcher.poll([w.handle for w in watched if w.handle is not None])
        now = time.monotonic()
        stopped: list[tuple[_Worker, TaskState]] = []
        for worker, state in zip(watched, states):
            if state.phase is TaskPhase.STOPPED:
                stopped.append((worker, state))
            elif state.phase is TaskPhase.PENDING and not worker.warm:
                if now - worker.launched_at > self._config.start_timeout:
                    self._stop_worker(worker, f"did not start within start_timeout="
                                              f"{self._config.start_timeout:g}s")
            elif self._config.task_timeout is not None and worker.batch is not None:
                if now - worker.batch.assigned_at > self._config.task_timeout:
                    self._stop_worker(worker, f"batch {worker.batch.batch_id} ran past "
                                              f"task_timeout={self._config.task_timeout:g}s")
        if not stopped:
            return False
        self._collect()  # a worker may have written its last results just before it stopped
        for worker, state in stopped:
            self._worker_gone(worker, state)
        return True

    def _forget_idle_workers(self) -> None:
        # An idle worker exits by itself after idle_timeout; stop tracking it a bit later.
        limit = self._config.idle_timeout + 5 * self._poll_max
        now = time.monotonic()
        for worker in list(self._workers.values()):
            if worker.idle_since is not None and now - worker.idle_since > limit:
                del self._workers[worker.worker_id]
                self._end_span(worker.worker_id, time.time() - (now - worker.idle_since)
                               + self._config.idle_timeout)

    def _stop_worker(self, worker: _Worker, reason: str) -> None:
        worker.stop_reason = reason
        if worker.handle is not None:
            self._launcher.stop([worker.handle], reason)

    def _worker_gone(self, worker: _Worker, state: TaskState) -> None:
        self._workers.pop(worker.worker_id, None)
        self._end_span(worker.worker_id, state.stopped_at)
        if worker.batch is not None:
            self._batch_lost(worker.batch, worker, state, None)

    def _requeue(self, batch: _Batch) -> None:
        batch.worker = None
        self._inflight.pop(batch.batch_id, None)
        self._retry.append(batch)

    def _batch_lost(
        self, batch: _Batch, worker: _Worker, state: TaskState | None, why: str | None
    ) -> None:
        if worker.batch is batch:
            worker.batch = None
        if not batch.futures:
            self._complete(batch)
            return
        # Not the batch's fault: the platform took the worker away, or the worker exited idle
        # (exit code 0) before it read this assignment.
        blameless = state is not None and worker.stop_reason is None and (
            state.interrupted or state.exit_code == 0)
        if blameless and batch.free_retries < _FREE_RETRIES:
            batch.free_retries += 1
        else:
            batch.failures += 1
        if batch.failures > self._config.max_retries:
            self._fail_batch(batch, self._worker_lost(batch, worker, state, why))
            return
        self._retries += 1
        self._requeue(batch)

    def _worker_lost(
        self, batch: _Batch, worker: _Worker, state: TaskState | None, why: str | None
    ) -> WorkerLost:
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

    # -- dispatch ---------------------------------------------------------------------------

    def _has_work(self) -> bool:
        return bool(self._retry or self._carry or self._intake.pending)

    def _dispatch(self) -> bool:
        if not self._has_work():
            return False
        now = time.monotonic()
        reuse_limit = self._config.idle_timeout / 2
        live = [w for w in self._workers.values() if w.stop_reason is None]
        # A worker idle for long is about to exit: give the work to a fresh worker instead.
        usable = [w for w in live
                  if w.idle_since is None or now - w.idle_since <= reuse_limit]
        progress = self._fill(usable)
        if self._has_work() and now >= self._launch_not_before:
            progress |= self._launch_workers(live)
        return progress

    def _fill(self, workers: list[_Worker]) -> bool:
        # One batch per worker at a time.  A second one assigned ahead would save a poll
        # interval between batches, but it would be pinned to that worker: it would wait
        # behind a long call while another worker sits idle.
        progress = False
        for worker in workers:
            if worker.batch is not None:
                continue
            batch = self._form_batch(self._capacity or self._max_workers)
            if batch is None:
                break
            self._assign(worker, batch)
            progress = True
        return progress

    def _launch_workers(self, live: list[_Worker]) -> bool:
        if self._capacity is None:
            self._capacity = max(1, self._launcher.capacity(self._max_workers))
        with self._intake.lock:
            waiting = len(self._intake.pending)
        wanted = min(self._capacity - len(live), waiting + len(self._carry) + len(self._retry))
        wanted = self._affordable(wanted, bool(live))
        if wanted <= 0:
            return False
        self._write_session()
        new = []
        for _ in range(wanted):
            new.append(_Worker(f"w{self._next_worker:05d}", time.monotonic()))
            self._next_worker += 1
        # Launch first, then pickle and assign: a worker boots while its batch is prepared
        # (it polls for its first assignment like for any other).
        results = self._launcher.launch(
            [WorkerSpec(w.worker_id, self._worker_env(w)) for w in new])
        for worker, result in zip(new, results):
            if isinstance(result, TaskHandle):
                worker.handle = result
                self._workers[worker.worker_id] = worker
                self._launch_backoff = 0.0
                self._launch_failing_since = None
                with self._usage_lock:
                    self._spans[worker.worker_id] = [time.time(), 0.0]
            else:
                self._launch_failed(result)
        for worker in new:
            if worker.handle is not None:
                batch = self._form_batch(self._capacity)
                if batch is None:
                    break
                self._assign(worker, batch)
        return True

    def _affordable(self, wanted: int, others_running: bool) -> int:
        """How many of ``wanted`` new workers fit under ``max_cost`` (each bills a minute)."""
        limit = self._config.max_cost
        if limit is None or self._price is None or wanted <= 0:
            return wanted
        _, spent = self._billed()
        minimum = self._price(0.0)
        fit = max(0, min(wanted, int((limit - (spent or 0.0)) / minimum) if minimum else wanted))
        if fit == 0 and not others_running:
            self._drain(CostLimitExceeded(
                f"starting a worker would exceed max_cost=${limit:.2f}: ${spent or 0.0:.2f} "
                f"spent so far, and a worker bills at least ${minimum:.4f} (one minute). "
                "Raise max_cost to run the rest."), cancel_pending=False)
        return fit

    def _guard_cost(self) -> None:
        if self._price is None:
            return
        _, spent = self._billed()
        if self._intake.progress is not None and spent is not None:
            self._intake.progress.set_info(cost=f"${spent:.2f}")
        limit = self._config.max_cost
        if limit is None or spent is None or spent <= limit or not self._workers:
            return
        # Running workers reached the limit: stop them rather than bill past it.
        handles = [w.handle for w in self._workers.values() if w.handle is not None]
        for worker in self._workers.values():
            worker.stop_reason = f"max_cost=${limit:.2f} reached"
        self._launcher.stop(handles, f"max_cost=${limit:.2f} reached")
        for worker_id in list(self._workers):
            self._end_span(worker_id)
        self._workers.clear()
        self._drain(CostLimitExceeded(
            f"the work was stopped at max_cost=${limit:.2f} (${spent:.2f} billed). Raise "
            "max_cost to run the rest."), cancel_pending=False)

    def _launch_failed(self, failure: LaunchFailure) -> None:
        if not failure.retryable:
            # Nothing can start a worker: fail the work waiting for one, with the reason.
            error = LaunchError(f"worker {failure.worker_id} could not be started: "
                                f"{failure.reason}")
            if not self._workers:
                self._drain(error, cancel_pending=False)
            return
        now = time.monotonic()
        if self._launch_failing_since is None:
            self._launch_failing_since = now
        elif not self._workers and now - self._launch_failing_since > self._config.start_timeout:
            # Transient or not, no worker for this long: say so rather than wait forever.
            self._drain(LaunchError(
                f"no worker could be started for {now - self._launch_failing_since:.0f} s "
                f"(start_timeout={self._config.start_timeout:g}s): {failure.reason}"),
                cancel_pending=False)
            self._launch_failing_since = None
            return
        self._launch_backoff = min(max(2 * self._launch_backoff, self._poll_max), 60.0)
        self._launch_not_before = now + self._launch_backoff * random.uniform(0.8, 1.2)

    def _worker_env(self, worker: _Worker) -> dict[str, str]:
        return {
            _keys.ENV_STORE_URL: self._store.url,
            _keys.ENV_WORKER_ID: worker.worker_id,
            _keys.ENV_IDLE_TIMEOUT: f"{self._config.idle_timeout:g}",
            _keys.ENV_FLUSH_INTERVAL: f"{self._flush_interval:g}",
            _keys.ENV_POLL_MIN: f"{self._poll_min:g}",
            _keys.ENV_POLL_MAX: f"{self._poll_max:g}",
        }

    def _assign(self, worker: _Worker, batch: _Batch) -> None:
        batch.attempt += 1
        batch.worker = worker
        batch.assigned_at = time.monotonic()
        order = {"batch": batch.batch_id, "attempt": batch.attempt,
                 "skip": sorted(batch.done_ids)}
        self._store.put(_keys.assign_key(worker.worker_id, worker.seq), json.dumps(order).encode())
        worker.seq += 1
        worker.batch = batch
        worker.idle_since = None
        self._inflight[batch.batch_id] = batch
        for future in batch.futures.values():
            future.metadata.attempts = batch.attempt
            future.metadata.worker_id = worker.worker_id

    def _take_items(self, workers: int) -> list[WorkItem]:
        """Move the next batch's worth of calls out of the queue and mark them running.

        Calls split off an oversized batch (``_carry``, already running) go first.
        """
        if self._bytes_per_call is None:
            first = self._carry[0] if self._carry else self._peek_pending()
            if first is None:
                return []
            try:  # one call's size bounds the first batch in bytes before it is pickled
                self._bytes_per_call = float(len(
                    payload.pickle_call(first.item_id, first.args, first.kwargs)))
            except SerializationError:
                pass  # reported with its batch
        with self._intake.lock:
            pending = self._intake.pending
            while pending and pending[0].future.cancelled():
                pending.popleft()
            source = self._carry or pending
            if not source:
                return []
            chunksize = source[0].chunksize
            size = next_batch_size(len(source), workers, self._policy, chunksize=chunksize,
                                   seconds_per_call=self._seconds_per_call)
            if self._bytes_per_call and chunksize is None:
                fit = int(self._policy.max_batch_bytes / self._bytes_per_call)
                size = max(1, min(size, fit))
            items: list[WorkItem] = []
            while source and len(items) < size and source[0].chunksize == chunksize:
                item = source.popleft()
                if source is self._carry or item.future.set_running_or_notify_cancel():
                    items.append(item)
        return items

    def _peek_pending(self) -> WorkItem | None:
        with self._intake.lock:
            return self._intake.pending[0] if self._intake.pending else None

    def _form_batch(self, workers: int) -> _Batch | None:
        if self._retry:
            return self._retry.popleft()
        while True:
            items = self._take_items(workers)
            if not items:
                return None
            batch = self._pickle_and_upload(items)
            if batch is not None:
                return batch

    def _pickle_and_upload(self, items: list[WorkItem]) -> _Batch | None:
        payload.register_local_modules()
        digests: list[str] = []
        index_of: dict[int, int] = {}
        calls: list[payload.Call] = []
        failed_fns: dict[int, SerializationError] = {}
        for item in items:
            key = id(item.fn)
            if key in failed_fns:
                self._fail_item(item, failed_fns[key])
                continue
            if key not in index_of:
                try:
                    pickled = payload.pickle_function(item.fn)
                except SerializationError as exc:
                    failed_fns[key] = exc
                    self._fail_item(item, exc)
                    continue
                digest = payload.function_digest(pickled)
                if digest not in self._uploaded:
                    self._store.put(_keys.function_key(digest), payload.dump("function", pickled))
                    self._uploaded.add(digest)
                index_of[key] = len(digests)
                digests.append(digest)
            calls.append((item.item_id, index_of[key], item.args, item.kwargs))
        if not calls:
            return None
        by_id = {item.item_id: item for item in items}
        batch_id = f"b{self._next_batch:09d}"
        try:
            body = payload.pickle_batch(batch_id, digests, calls)
        except Exception:
            calls = self._drop_unpicklable(calls, by_id)
            if not calls:
                return None
            body = payload.pickle_batch(batch_id, digests, calls)
        if len(body) > self._policy.max_batch_bytes and len(calls) > 1:
            sizes = [len(payload.pickle_call(c[0], c[2], c[3])) for c in calls]
            keep = split_by_bytes(sizes, self._policy.max_batch_bytes)
            for call in reversed(calls[keep:]):
                self._carry.appendleft(by_id[call[0]])
            calls = calls[:keep]
            body = payload.pickle_batch(batch_id, digests, calls)
        self._next_batch += 1
        self._batches += 1
        per_call = len(body) / len(calls)
        bpc = self._bytes_per_call
        self._bytes_per_call = per_call if bpc is None else 0.7 * bpc + 0.3 * per_call
        self._store.put(_keys.batch_key(batch_id), payload.dump("batch", body))
        futures: dict[int, StarburstFuture[Any]] = {}
        for item_id, _, _, _ in calls:
            future = by_id[item_id].future
            future.metadata.batch_id = batch_id
            futures[item_id] = future
        # The calls now live in the store: drop their arguments from client memory.
        items.clear()
        by_id.clear()
        return _Batch(batch_id, futures)

    def _drop_unpicklable(
        self, calls: list[payload.Call], by_id: dict[int, WorkItem]
    ) -> list[payload.Call]:
        """Fail the calls whose arguments cannot be pickled, naming the culprit; keep the rest."""
        kept = []
        for call in calls:
            try:
                payload.pickle_call(call[0], call[2], call[3])
            except SerializationError as exc:
                self._fail_item(by_id[call[0]], exc)
            else:
                kept.append(call)
        return kept

    def _fail_item(self, item: WorkItem, error: BaseException) -> None:
        try:
            item.future.set_exception(error)
        except InvalidStateError:
            pass
        if self._intake.progress is not None:
            self._intake.progress.done()

    # -- session bookkeeping ----------------------------------------------------------------

    def _session_doc(self) -> bytes:
        return json.dumps({
            "session_id": self._session_id,
            "backend": self._config.backend,
            "created": self._created,
            "heartbeat": time.time(),
            "python": payload.PYTHON_MINOR,
            "max_workers": self._max_workers,
            "cpu": self._config.cpu,
            "memory": self._config.memory,
        }).encode()

    def _write_session(self) -> None:
        if not self._session_written:
            self._store.put(_keys.SESSION, self._session_doc())
            self._session_written = True
            self._last_heartbeat = time.monotonic()

    def _heartbeat(self) -> None:
        if self._session_written and self._workers and (
                time.monotonic() - self._last_heartbeat > _HEARTBEAT_SECONDS):
            self._store.put(_keys.SESSION, self._session_doc())
            self._last_heartbeat = time.monotonic()

    # -- endings ----------------------------------------------------------------------------

    def _terminate(self, reason: str) -> None:
        """Stop now: cancel what waits, fail what runs (workers are stopped in ``_close``)."""
        self._drain(CancelledError(f"the executor was stopped ({reason}) before this call "
                                   "finished"), cancel_pending=True)

    def _break(self, exc: BaseException) -> None:
        if isinstance(exc, StarburstError):
            text = f"{type(exc).__name__}: {exc}"
        else:
            text = f"internal error {type(exc).__name__}: {exc} (please report it)"
        with self._intake.lock:
            self._intake.broken = text
        error = ExecutorBroken(f"the executor stopped working: {text}")
        error.__cause__ = exc
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
                self._fail_item(item, error)
        for item in self._carry:
            self._fail_item(item, error)
        self._carry.clear()
        for batch in list(self._inflight.values()) + list(self._retry):
            self._fail_batch(batch, error)
        self._retry.clear()

    def _close(self) -> None:
        try:
            self._launcher.close()
            for worker_id in list(self._spans):
                self._end_span(worker_id)
        finally:
            try:
                if self._delete_session:
                    self._store.delete_prefix("")
            finally:
                self._store.close()
                if self._intake.progress is not None:
                    self._intake.progress.close()

    # -- reporting --------------------------------------------------------------------------

    def usage(self, calls: int) -> Usage:
        requests = {f"{self._store_name}.{op}": n for op, n in self._store.stats.requests.items()}
        # A launcher names its platform's operations bare ("RunTask") and calls to other
        # services with theirs ("sts.GetCallerIdentity").
        requests.update({op if "." in op else f"{self._launcher_name}.{op}": n
                         for op, n in self._launcher.stats.requests.items()})
        task_seconds, cost = self._billed()
        return Usage(
            requests=requests,
            bytes_uploaded=self._store.stats.bytes_out,
            bytes_downloaded=self._store.stats.bytes_in,
            calls=calls,
            batches=self._batches,
            retries=self._retries,
            tasks_launched=self._launcher.stats.tasks_started,
            task_seconds=task_seconds,
            cost=cost,
        )

    def _billed(self) -> tuple[float, float | None]:
        now = time.time()
        with self._usage_lock:
            durations = [(end or now) - start for start, end in self._spans.values()]
        seconds = sum(durations)
        if self._price is None:
            return seconds, None
        return seconds, sum(self._price(d) for d in durations)

    def _end_span(self, worker_id: str, at: float | None = None) -> None:
        with self._usage_lock:
            span = self._spans.get(worker_id)
            if span is not None and not span[1]:
                span[1] = at or time.time()
