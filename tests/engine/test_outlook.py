"""The outlook: when results are due, from the estimates and what each worker holds."""

from __future__ import annotations

from .test_dispatch import _dispatch_of, _running


def test_late_results_with_no_batch_behind_them_are_looked_for_more_often() -> None:
    _, claims, workers, dispatcher, (first, second) = _running(4, 1.0)
    for worker in (first, second):
        assert worker.batch is not None
        worker.batch.claimed_at -= 1.5  # both late by half a second
    outlook = dispatcher.outlook
    dispatcher.fill([first, second], work_left=True, may_queue=True)
    assert first.queued is not None and second.queued is not None
    # Each goes on with its queued batch: the late results can wait for the next poll.
    assert outlook.next_due() == workers.poll_min
    for worker in (first, second):
        assert worker.queued is not None
        claims.revoke(worker.queued)
        workers.release(worker, worker.queued)
    # Nothing behind them: each worker waits for the client (or these are the last results).
    assert outlook.next_due() == max(workers.poll_min / 4, min(workers.poll_min, 0.05))


def test_a_worker_still_starting_is_looked_at_now_and_then() -> None:
    _, _, workers, dispatcher = _dispatch_of(2)
    live, _ = workers.launch(2)
    dispatcher.fill(live, work_left=True, may_queue=True)
    assert dispatcher.outlook.next_due() == workers.poll_max / 2
    workers.watch()  # seen running: its claim comes any moment
    assert dispatcher.outlook.next_due() == workers.poll_min


def test_a_batch_past_its_estimate_by_less_than_a_poll_is_not_a_slow_host() -> None:
    _, _, workers, dispatcher, (first, _) = _running(4, 1.0)
    assert first.batch is not None
    outlook = dispatcher.outlook
    # Ended, maybe: a batch's end is seen up to the shortest poll late.
    first.batch.claimed_at -= 1.0 + workers.poll_min / 2
    assert outlook.pace(first) == first.pace == 1.0
    first.batch.claimed_at -= 1.0  # twice its estimate: a slow host shows
    assert outlook.pace(first) > 1.5


def test_results_are_looked_for_one_write_after_the_expected_end_then_soon() -> None:
    for poll_min, after in ((1.0, 0.1), (0.05, 0.0125)):  # an S3 store's poll, a Docker one's
        _, _, workers, dispatcher, (first, second) = _running(2, 10.0)
        workers.poll_min = poll_min
        for worker in (first, second):
            assert worker.batch is not None and worker.queued is None
            worker.batch.claimed_at -= 9.0  # one second left of each
        due = dispatcher.outlook.next_due()
        # Not a quarter of a one-second poll late: the last part's write is a round trip.
        assert due is not None and 0.5 < due <= 1.0 + after
        for worker in (first, second):
            assert worker.batch is not None
            worker.batch.claimed_at -= 1.1  # late by a tenth of a second: again soon
        due = dispatcher.outlook.next_due()
        assert due is not None and (0.1 <= due < 0.25 if poll_min == 1.0 else due == 0.05)
        for worker in (first, second):
            assert worker.batch is not None
            worker.batch.claimed_at -= 0.9  # by a second: less often
        assert dispatcher.outlook.next_due() == (0.25 if poll_min == 1.0 else 0.05)


def test_a_running_batch_of_untimed_calls_is_long_once_it_may_have_run_a_hand_off() -> None:
    batcher, claims, workers, dispatcher = _dispatch_of(4)
    live, _ = workers.launch(2)
    dispatcher.fill(live, work_left=True, may_queue=True)
    head = live[0].batch
    assert head is not None
    claims.confirm(head, head.attempt)  # seen claimed just now; no call of it timed
    batcher.estimates.handoff = 1.0
    workers.poll_min = 0.05  # a claim is seen at most 50 ms late: not long yet
    assert not dispatcher.outlook.long(head)
    head.claimed_at -= 1.0
    assert dispatcher.outlook.long(head)
    head.claimed_at += 1.0
    workers.poll_min = 1.5  # S3: it may have been claimed a poll before it was seen
    assert dispatcher.outlook.long(head)
