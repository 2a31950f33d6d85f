"""Claims: a batch queued for a worker is revocable until the worker claims it, and exactly one
side wins.  Driven with the real worker on a memory store (no processes, no timers)."""

from __future__ import annotations

import threading
import time
from typing import Any

from starburst_executor import _keys, payload
from starburst_executor.config import load_config
from starburst_executor.engine import Ledger
from starburst_executor.engine.batches import ASSIGNED, CLAIMED, REVOKED, Batch, Batcher
from starburst_executor.engine.claims import Claims
from starburst_executor.engine.workers import Workers
from starburst_executor.planner import BatchPolicy
from starburst_executor.storage.memory import MemoryStore
from starburst_executor.worker import Worker as RealWorker

from .fakes import SECRET, ScriptedLauncher, intake_with, memory_store
from .test_dispatch import _running


def _double(x: int) -> int:
    return 2 * x


class _Setup:
    def __init__(self, calls: int, chunksize: int = 1) -> None:
        self.store: MemoryStore = memory_store()
        self.intake, self.futures = intake_with(_double, [(i,) for i in range(calls)], chunksize)
        self.batcher = Batcher(self.intake, self.store, BatchPolicy(), secret=SECRET)
        self.claims = Claims(self.store, self.intake.wake)
        config = load_config({"backend": "local"})
        self.workers = Workers(self.store, ScriptedLauncher(), config, 2, Ledger(None, None),
                               secret=SECRET)
        (self.worker,), _ = self.workers.launch(1)

    def assign_next(self) -> Batch:
        batch = self.batcher.form(1)
        assert batch is not None
        self.claims.bind(batch)
        self.workers.assign(self.worker, batch)
        return batch

    def run_worker(self) -> None:
        RealWorker(self.store, self.worker.worker_id, secret=SECRET, idle_timeout=0.2,
                   poll_max=0.01).run()

    def results(self) -> dict[int, Any]:
        out = {}
        for key in self.store.list(_keys.RESULTS_PREFIX):
            part = payload.ResultPart.decode(self.store.get(key), key=key, secret=SECRET)
            for record in part.records:
                out[record.item_id] = payload.decode_result(record)[1]
        return out


def test_a_queued_batch_is_revoked_by_cancel_and_never_runs() -> None:
    setup = _Setup(2)
    head, queued = setup.assign_next(), setup.assign_next()
    assert setup.worker.batch is head and setup.worker.queued is queued and queued.queued
    assert setup.futures[1].cancel() is True
    assert queued.claim == REVOKED and setup.claims.take_revoked() == [queued]
    setup.run_worker()
    assert setup.results() == {0: 0}  # the revoked batch never started


def test_a_claimed_batch_is_running_and_cannot_be_cancelled() -> None:
    setup = _Setup(1)
    batch = setup.assign_next()
    assert not setup.futures[0].running()
    setup.run_worker()
    assert setup.workers.unclaimed() == []  # not seen running yet: no LIST of claims for it
    setup.workers.watch()  # the launcher says it runs
    setup.claims.look(setup.workers.unclaimed())
    assert batch.claim == CLAIMED and setup.futures[0].running()
    assert setup.futures[0].cancel() is False


def test_cancel_racing_the_worker_claim_has_one_winner() -> None:
    # The worker's claim lands first, unseen by the client: cancel() learns it and says False.
    setup = _Setup(1)
    batch = setup.assign_next()
    key = _keys.claim_key(batch.batch_id, batch.attempt)
    assert setup.store.put_if_absent(key, _keys.Claim("w00000").encode())
    assert setup.futures[0].cancel() is False
    assert batch.claim == CLAIMED and setup.futures[0].running()


def test_calls_cancelled_before_assignment_are_skipped() -> None:
    setup = _Setup(3, chunksize=3)
    batch = setup.batcher.form(1)
    assert batch is not None
    setup.claims.bind(batch)
    assert setup.futures[1].cancel() is True  # not assigned yet: no request needed
    setup.workers.assign(setup.worker, batch)
    key = _keys.assign_key("w00000", 0)
    order = payload.Assignment.decode(setup.store.get(key), key=key, secret=SECRET)
    assert order.skip == {1} and sorted(batch.futures) == [0, 2]
    setup.run_worker()
    assert setup.results() == {0: 0, 2: 4}


def test_many_threads_cancelling_one_queued_batch() -> None:
    setup = _Setup(8, chunksize=4)
    setup.assign_next()
    queued = setup.assign_next()
    outcomes: list[bool] = []
    threads = [threading.Thread(target=lambda f=f: outcomes.append(f.cancel()))
               for f in setup.futures[4:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert outcomes == [True] * 4 and queued.claim == REVOKED
    assert setup.store.stats.requests["put"] >= 1
    assert setup.claims.take_revoked() == [queued]  # revoked once, by one request


def test_a_queued_batch_claimed_after_the_one_before_it_ended_is_dated_from_that_end() -> None:
    _, claims, workers, dispatcher, (worker, other) = _running(6, 1.0)
    dispatcher.fill([worker, other], work_left=True, may_queue=True)
    head, queued = worker.batch, worker.queued
    assert head is not None and queued is not None
    queued.assigned_at -= 5.0
    worker.last_end = time.time() - 0.8  # its head's last call ended 0.8 s ago, seen now
    dispatcher.complete(head)
    assert worker.batch is queued
    claims.confirm(queued, queued.attempt)
    # It started as the batch before it ended, not when its claim was seen.
    assert abs(time.monotonic() - queued.claimed_at - 0.8) < 0.3
    # A batch handed to a free worker is dated when its claim is seen.
    fresh = other.batch
    assert fresh is not None and not fresh.queued
    fresh.claim = ASSIGNED
    fresh.assigned_at -= 5.0
    claims.confirm(fresh, fresh.attempt)
    assert time.monotonic() - fresh.claimed_at < 0.3
