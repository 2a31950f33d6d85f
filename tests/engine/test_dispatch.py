"""Dispatch: when a batch is queued behind a running one, how large, and when results are due.
Driven with the real batcher and claims on a memory store and a scripted launcher."""

from __future__ import annotations

from starburst_executor.config import load_config
from starburst_executor.engine import Ledger
from starburst_executor.engine.batches import Batcher
from starburst_executor.engine.claims import Claims
from starburst_executor.engine.dispatch import Dispatcher
from starburst_executor.engine.workers import Workers
from starburst_executor.planner import BatchPolicy

from .fakes import SECRET, ScriptedLauncher, intake_with, memory_store


def _double(x: int) -> int:
    return 2 * x


def _dispatch_of(calls: int) -> tuple[Batcher, Claims, Workers, Dispatcher]:
    """A dispatcher for ``calls`` pending calls of ``_double`` on two scripted workers."""
    store = memory_store()
    intake, _ = intake_with(_double, [(i,) for i in range(calls)])
    policy = BatchPolicy(overhead_seconds=1.0)
    batcher = Batcher(intake, store, policy, secret=SECRET)
    ledger = Ledger(None, None)
    workers = Workers(store, ScriptedLauncher(), load_config({"backend": "local"}), 2, ledger,
                      secret=SECRET)
    claims = Claims(store, intake.wake)
    dispatcher = Dispatcher(workers, batcher, claims, ledger, policy, rerun_stragglers=True)
    dispatcher.waiting = lambda: len(intake.pending)
    return batcher, claims, workers, dispatcher


def test_a_running_worker_gets_a_queued_batch_once_durations_are_known() -> None:
    batcher, claims, workers, dispatcher = _dispatch_of(6)
    live, _ = workers.launch(2)
    assert workers.room(2) == 0
    dispatcher.fill(live, work_left=True, may_queue=True)
    assert [len(w.batch.futures) for w in live if w.batch] == [1, 1]  # nothing known: alone
    assert workers.unclaimed() == [] and not workers.any_started()  # no LIST while starting
    dispatcher.fill(live, work_left=True, may_queue=True)
    assert all(w.queued is None for w in live)  # not seen running, nothing measured
    head = live[0].batch
    assert head is not None
    (digest,) = set(head.digest_of.values())
    batcher.observe(digest, 1.0)
    workers.watch()  # the launcher says they run
    assert workers.news and workers.any_started()
    dispatcher.fill(live, work_left=True, may_queue=True)
    # Six calls on two workers: at most three each, one of them held already (and the
    # planner's fair share of the four left for the second).
    assert [len(w.queued.futures) for w in live if w.queued] == [2, 1]
    assert dispatcher.next_due() is None  # none claimed yet
    claims.confirm(head, head.attempt)
    due = dispatcher.next_due()
    assert due is not None and 0 < due <= 1.0


def test_a_slow_worker_takes_a_smaller_share() -> None:
    batcher, _, workers, dispatcher = _dispatch_of(20)
    fast, slow = workers.launch(2)[0]
    assert workers.room(2) == 0
    dispatcher.fill([fast, slow], work_left=True, may_queue=True)
    assert slow.batch is not None
    (digest,) = set(slow.batch.digest_of.values())
    batcher.observe(digest, 1.0)
    slow.pace = 4.0  # its calls ran four times longer than their estimate
    workers.watch()
    dispatcher.fill([slow, fast], work_left=True, may_queue=True)
    assert slow.queued is not None and fast.queued is not None
    # 20 calls at speeds 1/4 and 1: the slow one's share is 4 of them, the fast one's 16.
    assert len(slow.queued.futures) + 1 <= 4 < len(fast.queued.futures) + 1
