"""Dispatch: when a batch is queued behind a running one, how large, and when results are due.
Driven with the real batcher and claims on a memory store and a scripted launcher."""

from __future__ import annotations

import time

from starburst_executor import _keys, payload
from starburst_executor.config import load_config
from starburst_executor.engine import Ledger
from starburst_executor.engine.batches import Batch, Batcher
from starburst_executor.engine.claims import Claims
from starburst_executor.engine.dispatch import Dispatcher
from starburst_executor.engine.workers import Worker, Workers
from starburst_executor.planner import BatchPolicy

from .fakes import SECRET, ScriptedLauncher, intake_with, memory_store


def _double(x: int) -> int:
    return 2 * x


def _dispatch_of(calls: int, chunksize: int | None = None
                 ) -> tuple[Batcher, Claims, Workers, Dispatcher]:
    """A dispatcher for ``calls`` pending calls of ``_double`` on two scripted workers."""
    store = memory_store()
    intake, _ = intake_with(_double, [(i,) for i in range(calls)], chunksize=chunksize)
    policy = BatchPolicy(overhead_seconds=1.0)
    batcher = Batcher(intake, store, policy, secret=SECRET)
    ledger = Ledger(None, None)
    workers = Workers(store, ScriptedLauncher(), load_config({"backend": "local"}), 2, ledger,
                      secret=SECRET)
    claims = Claims(store, intake.wake)
    dispatcher = Dispatcher(workers, batcher, claims, ledger, policy, rerun_stragglers=True)
    dispatcher.waiting = lambda: len(intake.pending)
    return batcher, claims, workers, dispatcher


def _running(calls: int, seconds: float, chunksize: int | None = None
             ) -> tuple[Batcher, Claims, Workers, Dispatcher, list[Worker]]:
    """Two workers seen running their first batch (claimed), of a function measured to take
    ``seconds`` a call; ``calls`` pending at first."""
    batcher, claims, workers, dispatcher = _dispatch_of(calls, chunksize)
    live, _ = workers.launch(2)
    dispatcher.fill(live, work_left=True, may_queue=True)
    (digest,) = {w.batch.digest for w in live if w.batch}
    batcher.observe(digest, seconds)
    workers.watch()
    for worker in live:
        assert worker.batch is not None
        claims.confirm(worker.batch, worker.batch.attempt)
    return batcher, claims, workers, dispatcher, live


def _one_batch(calls: int) -> tuple[Batcher, Claims, Dispatcher, Worker, Batch]:
    """One worker holding the first batch of ``calls`` pending calls."""
    batcher, claims, workers, dispatcher = _dispatch_of(calls)
    (worker,), _ = workers.launch(1)
    dispatcher.fill([worker], work_left=True, may_queue=True)
    assert worker.batch is not None
    return batcher, claims, dispatcher, worker, worker.batch


def test_a_running_worker_gets_a_queued_batch_once_durations_are_known() -> None:
    batcher, claims, workers, dispatcher = _dispatch_of(6)
    live, _ = workers.launch(2)
    assert workers.room(2) == 0
    dispatcher.fill(live, work_left=True, may_queue=True)
    assert [len(w.batch.futures) for w in live if w.batch] == [1, 1]  # nothing known: alone
    assert workers.unclaimed() == [] and not workers.any_started()  # no LIST while starting
    dispatcher.fill(live, work_left=True, may_queue=True)
    assert all(w.queued is None for w in live)  # not seen running, nothing measured
    assert dispatcher.next_due() == workers.poll_max / 2  # starting: look now and then
    head = live[0].batch
    assert head is not None
    digest = head.digest
    batcher.observe(digest, 1.0)
    workers.watch()  # the launcher says they run
    assert workers.news and workers.any_started()
    dispatcher.fill(live, work_left=True, may_queue=True)
    # No call of theirs ended yet (how fast a host each is, is not known): one call each.
    assert [len(w.queued.futures) for w in live if w.queued] == [1, 1]
    # Each says how long it should run, if known when written (its worker reads the next
    # assignment late in it).

    def order(seq: int) -> payload.Assignment:
        key = _keys.assign_key(live[0].worker_id, seq)
        return payload.Assignment.decode(workers._store.get(key), key=key, secret=SECRET)

    assert order(0).expected == 0.0 and order(1).expected == 1.0
    assert dispatcher.next_due() == workers.poll_min  # they run, no claim seen: look soon
    for worker in live:
        assert worker.batch is not None
        claims.confirm(worker.batch, worker.batch.attempt)
    due = dispatcher.next_due()
    assert due is not None and 0.5 < due <= 1.0 + workers.poll_min / 4  # just after the end


def test_a_slow_worker_takes_a_smaller_share() -> None:
    batcher, _, workers, dispatcher = _dispatch_of(20)
    fast, slow = workers.launch(2)[0]
    assert workers.room(2) == 0
    dispatcher.fill([fast, slow], work_left=True, may_queue=True)
    assert slow.batch is not None
    digest = slow.batch.digest
    batcher.observe(digest, 1.0)
    slow.pace = 4.0  # its calls ran four times longer than their estimate
    fast.last_end = slow.last_end = time.time()  # a call of each has ended
    workers.watch()
    dispatcher.fill([slow, fast], work_left=True, may_queue=True)
    assert slow.queued is not None and fast.queued is not None
    # 20 calls at speeds 1/4 and 1: the slow one's share is 4 of them, the fast one's 16.
    assert len(slow.queued.futures) + 1 <= 4 < len(fast.queued.futures) + 1


def test_the_calls_left_go_first_to_the_worker_free_soonest() -> None:
    _, _, _, dispatcher, (nearly_done, just_started) = _running(3, 10.0)
    assert nearly_done.batch is not None
    nearly_done.batch.claimed_at -= 9.0  # free in a second; the other in ten
    nearly_done.last_end = just_started.last_end = time.time()  # both ran calls before
    dispatcher.fill([just_started, nearly_done], work_left=True, may_queue=True)
    # One call left: behind the worker that runs dry first; the other's share is what it
    # holds (queued behind it, the call would end nine seconds later).
    assert nearly_done.queued is not None and len(nearly_done.queued.futures) == 1
    assert just_started.queued is None


def test_a_batch_is_dated_from_its_first_call_not_from_when_its_claim_was_seen() -> None:
    _, claims, dispatcher, worker, batch = _one_batch(2)
    batch.assigned_at -= 10.0  # assigned ten seconds ago
    claims.confirm(batch, batch.attempt)  # its claim seen only now
    seen = batch.claimed_at
    (item_id,) = batch.futures
    now = time.time()
    part = payload.ResultPart(batch.batch_id, batch.attempt, worker.worker_id,
                              [payload.encode_value(item_id, 0, now - 3.0, now - 1.0)])
    dispatcher.observe(batch, part, worker)
    assert seen - 3.5 < batch.claimed_at < seen - 2.5  # its call started three seconds ago


def test_a_workers_first_results_set_its_pace_outright() -> None:
    batcher, claims, dispatcher, worker, batch = _one_batch(2)
    digest = batch.digest
    batcher.observe(digest, 2.0)  # other workers' calls of it took two seconds
    claims.confirm(batch, batch.attempt)
    (item_id,) = batch.futures
    now = time.time()
    part = payload.ResultPart(batch.batch_id, batch.attempt, worker.worker_id,
                              [payload.encode_value(item_id, 0, now - 10.0, now)])
    dispatcher.observe(batch, part, worker)
    # A slow host: five times the estimate, known from its first call (not averaged with
    # the 1.0 it was assumed to have), so that it is not given a full share meanwhile.
    assert 4.0 < worker.pace <= 5.0


def test_a_queued_batch_of_a_chunked_map_keeps_its_chunksize() -> None:
    _, _, _, dispatcher, live = _running(12, 1.0, chunksize=3)
    assert [len(w.batch.futures) for w in live if w.batch] == [3, 3]
    dispatcher.fill(live, work_left=True, may_queue=True)
    # No call of theirs ended (else: one call queued each), but map(chunksize=3) is exact.
    assert [len(w.queued.futures) for w in live if w.queued] == [3, 3]


def test_a_slow_host_left_free_takes_nothing_the_others_end_sooner() -> None:
    _, _, _, dispatcher, (slow, fast) = _running(3, 2.0)
    assert slow.batch is not None
    dispatcher.complete(slow.batch)  # its call ended: it runs nothing now
    assert slow.batch is None
    slow.pace, slow.last_end = 5.0, time.time()  # its calls took five times the estimate
    fast.last_end = time.time()
    dispatcher.fill([slow, fast], work_left=True, may_queue=True)
    # One call waits: 10 s on the slow host, 2 s on the other, free in two seconds.
    assert slow.batch is None and fast.queued is not None


def test_a_slow_host_left_free_takes_no_queued_batch_its_worker_ends_sooner() -> None:
    _, _, _, dispatcher, (slow, fast) = _running(3, 2.0)
    assert slow.batch is not None
    dispatcher.complete(slow.batch)
    slow.pace, slow.last_end = 5.0, time.time()
    fast.last_end = time.time()
    dispatcher.fill([slow, fast], work_left=True, may_queue=True)
    queued = fast.queued
    assert queued is not None
    # Nothing left to batch: a free worker may take a queued batch over, but this one would
    # end its call in 10 s, where the fast worker, free in 2 s, ends it in 4.
    dispatcher.fill([slow, fast], work_left=False, may_queue=True)
    assert slow.batch is None and fast.queued is queued
    slow.pace = 1.0  # as fast as the other: it ends the call in 2 s, so it takes it over
    dispatcher.fill([slow, fast], work_left=False, may_queue=True)
    assert slow.batch is queued and fast.queued is None
