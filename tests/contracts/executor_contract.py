"""The ``concurrent.futures`` contract, as tests any Executor must pass.

A test module subclasses the contract classes and provides one fixture, ``make_executor``: a
callable ``make_executor(max_workers: int) -> Executor``.  The classes here create executors
through it and always shut them down (``shutdown(wait=True, cancel_futures=True)``).

* :class:`ExecutorContract`: what every stdlib executor does.  It passes on
  ``ThreadPoolExecutor`` and ``ProcessPoolExecutor``, which proves the suite itself.
* :class:`ProcessContract`: what ``ProcessPoolExecutor`` adds to the base ``Executor``
  (``chunksize`` is validated; a worker's exception has the remote traceback as ``__cause__``).
  ``ThreadPoolExecutor`` ignores ``chunksize`` and raises in-process, so it is not held to it.
* :class:`RemoteCallablesContract`: what only ``FargateExecutor`` promises (lambdas, closures,
  ``__main__`` classes, the user's local modules, clear serialization errors, metadata, usage,
  the progress bar).  Its ``make_executor`` must also accept ``FargateExecutor`` settings as
  keywords (``make_executor(1, progress=True)``).

Every test is bounded in time: results, ``wait`` and ``as_completed`` get explicit timeouts,
and calls that must stay running wait on a file "gate" with a time limit (see ``_exec_funcs``).
"""

from __future__ import annotations

import functools
import gc
import importlib
import inspect
import os
import random
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    CancelledError,
    Executor,
    Future,
    as_completed,
    wait,
)
from pathlib import Path
from typing import Any

import pytest

from . import _exec_funcs as fx

T = 30.0  # timeout for a result that should come; a hang fails in seconds, not at pytest-timeout
SHORT = 0.2  # timeout that is meant to expire

MakeExecutor = Callable[..., Executor]


class Gate:
    """A file that a gated call (``fx.wait_for_gate``) waits for; ``open()`` releases it."""

    def __init__(self, path: Path):
        self.path = str(path)

    def open(self) -> None:
        Path(self.path).touch()


class _Fixtures:
    """Executors made through ``make_executor`` and always shut down; gates always opened."""

    @pytest.fixture
    def executors(self, make_executor: MakeExecutor) -> Iterator[MakeExecutor]:
        """``executors(max_workers=2, **kw)``: a new executor, shut down after the test."""
        made: list[Executor] = []

        def new(max_workers: int = 2, **settings: Any) -> Executor:
            ex = make_executor(max_workers, **settings)
            made.append(ex)
            return ex

        yield new
        for ex in made:
            ex.shutdown(wait=True, cancel_futures=True)

    @pytest.fixture
    def executor(self, executors: MakeExecutor) -> Executor:
        return executors(2)

    @pytest.fixture
    def gates(self, executors: MakeExecutor, tmp_path: Path) -> Iterator[Callable[[], Gate]]:
        """``gates()``: a new gate.  Every gate is opened before the executors shut down (this
        fixture depends on ``executors``, so it is torn down first), so none delays teardown."""
        made: list[Gate] = []

        def new() -> Gate:
            gate = Gate(tmp_path / f"gate-{len(made)}")
            made.append(gate)
            return gate

        yield new
        for gate in made:
            gate.open()


class ExecutorContract(_Fixtures):
    """The stdlib ``concurrent.futures`` contract; see the module docstring.

    ``bound_ahead``: how many calls beyond the running ones an executor may hand to its
    workers ahead of time, where ``cancel()`` no longer reaches them.  ``ProcessPoolExecutor``
    fills a call queue of ``max_workers + 1`` (``EXTRA_QUEUED_CALLS``): 3 with the two workers
    these tests use at most; an executor that binds a call only when a worker starts it sets 0.
    """

    bound_ahead = 3

    # -- submit and result --------------------------------------------------------------------

    def test_submit_returns_a_future_with_the_result(self, executor: Executor) -> None:
        future = executor.submit(fx.square, 12)
        assert isinstance(future, Future)
        assert future.result(timeout=T) == 144
        assert future.done() and not future.cancelled() and not future.running()
        assert future.exception(timeout=T) is None

    def test_submit_passes_positional_and_keyword_arguments(self, executor: Executor) -> None:
        future = executor.submit(fx.describe, 1, b=[2], c={"three": 3})
        assert future.result(timeout=T) == (1, [2], {"three": 3})

    def test_submit_builtin_function(self, executor: Executor) -> None:
        assert executor.submit(pow, 2, 10).result(timeout=T) == 1024

    def test_submit_partial_and_callable_object(self, executor: Executor) -> None:
        assert executor.submit(functools.partial(fx.add, 1), 2).result(timeout=T) == 3
        assert executor.submit(fx.Multiplier(3), 5).result(timeout=T) == 15

    def test_submit_keyword_arguments_named_fn_and_self(self, executor: Executor) -> None:
        # submit(fn, /, *args, **kwargs): these names belong to the call, not to submit.
        assert executor.submit(dict, fn=1, self=2).result(timeout=T) == {"fn": 1, "self": 2}

    def test_result_timeout_raises_timeout_error_in_time(
        self, executor: Executor, gates: Callable[[], Gate]
    ) -> None:
        gate = gates()
        future = executor.submit(fx.wait_for_gate, gate.path, "late")
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            future.result(timeout=SHORT)
        assert time.monotonic() - start < SHORT + 2.0
        gate.open()
        assert future.result(timeout=T) == "late"

    def test_max_workers_calls_run_at_the_same_time(
        self, executors: MakeExecutor, gates: Callable[[], Gate]
    ) -> None:
        # With two workers and one of them busy, a second call must not queue behind the first
        # (calls that wait for each other would deadlock, and a slow call would delay others).
        executor = executors(2)
        gate = gates()
        slow = executor.submit(fx.wait_for_gate, gate.path, "slow")
        _wait_until(slow.running, "the first call to start")
        fast = executor.submit(fx.square, 3)
        assert fast.result(timeout=fx.GATE_LIMIT / 2) == 9
        assert not slow.done()
        gate.open()
        assert slow.result(timeout=T) == "slow"

    def test_a_busy_worker_does_not_hold_up_calls_a_free_worker_can_run(
        self, executors: MakeExecutor, gates: Callable[[], Gate]
    ) -> None:
        # One worker is stuck in a long call; the other must get through every other call
        # (with the stdlib pools, a call never waits while a worker is free).
        executor = executors(2)
        gate = gates()
        slow = executor.submit(fx.wait_for_gate, gate.path, "slow")
        _wait_until(slow.running, "the first call to start")
        quick = [executor.submit(fx.nap, 0.02, i) for i in range(8)]
        done, not_done = wait(quick, timeout=fx.GATE_LIMIT / 2)
        assert not not_done, f"{len(not_done)} of 8 calls waited behind the busy worker"
        assert [f.result(timeout=0) for f in quick] == list(range(8))
        assert not slow.done()
        gate.open()
        assert slow.result(timeout=T) == "slow"

    # -- exceptions ---------------------------------------------------------------------------

    def test_exception_keeps_type_args_and_message(self, executor: Executor) -> None:
        future = executor.submit(fx.raise_value_error, "bad value", 42)
        with pytest.raises(ValueError) as info:
            future.result(timeout=T)
        assert type(info.value) is ValueError
        assert info.value.args == ("bad value", 42)
        assert str(info.value) == str(ValueError("bad value", 42))
        exc = future.exception(timeout=T)
        assert type(exc) is ValueError and exc.args == ("bad value", 42)

    def test_custom_exception_keeps_type_attributes_and_message(self, executor: Executor) -> None:
        future = executor.submit(fx.raise_contract_error, 7, "custom trouble")
        with pytest.raises(fx.ContractError) as info:
            future.result(timeout=T)
        assert type(info.value) is fx.ContractError
        assert info.value.args == (7, "custom trouble")
        assert (info.value.code, info.value.detail) == (7, "custom trouble")
        assert str(info.value) == "[7] custom trouble"

    def test_an_exception_returned_as_a_value_is_not_raised(self, executor: Executor) -> None:
        value = executor.submit(fx.identity, ValueError("just data")).result(timeout=T)
        assert type(value) is ValueError and value.args == ("just data",)

    def test_an_exception_does_not_spoil_other_calls(self, executor: Executor) -> None:
        bad = executor.submit(fx.raise_value_error, "x")
        good = executor.submit(fx.square, 3)
        with pytest.raises(ValueError):
            bad.result(timeout=T)
        assert good.result(timeout=T) == 9
        assert executor.submit(fx.square, 4).result(timeout=T) == 16

    def test_system_exit_in_a_call_is_its_outcome(self, executor: Executor) -> None:
        # Like the stdlib pools: a BaseException raised by the call travels back, and the
        # executor keeps working.
        with pytest.raises(SystemExit) as info:
            executor.submit(sys.exit, 3).result(timeout=T)
        assert info.value.code == 3
        assert executor.submit(fx.square, 5).result(timeout=T) == 25

    # -- map ----------------------------------------------------------------------------------

    def test_map_returns_results_in_input_order(self, executor: Executor) -> None:
        # Earlier items sleep longer, so they finish last; the results still come in order.
        delays = [0.15, 0.1, 0.05, 0.0]
        values = list(executor.map(fx.nap, delays, ["a", "b", "c", "d"], timeout=T))
        assert values == ["a", "b", "c", "d"]

    def test_map_of_nothing_is_empty(self, executor: Executor) -> None:
        assert list(executor.map(fx.square, [], timeout=T)) == []

    def test_map_consumes_a_generator_at_once(self, executor: Executor) -> None:
        consumed: list[int] = []

        def numbers() -> Iterator[int]:
            for i in range(20):
                consumed.append(i)
                yield i

        results = executor.map(fx.square, numbers(), timeout=T)
        assert consumed == list(range(20))  # before the first result is asked for
        assert list(results) == [i * i for i in range(20)]

    def test_map_yields_each_result_before_later_calls_finish(
        self, executor: Executor, gates: Callable[[], Gate]
    ) -> None:
        gate = gates()
        results = executor.map(fx.gated_or_fast, [None, gate.path], ["first", "second"],
                                timeout=T)
        assert next(results) == "first"  # while the second call still waits for its gate
        gate.open()
        assert next(results) == "second"
        with pytest.raises(StopIteration):
            next(results)

    def test_map_zips_several_iterables_shortest_first(self, executor: Executor) -> None:
        assert list(executor.map(pow, [2, 3, 4], [5, 6], timeout=T)) == [32, 729]
        assert list(executor.map(fx.add, range(3), iter(range(10, 100)), timeout=T)) == [
            10, 12, 14]

    def test_map_timeout_raises_timeout_error_in_time(
        self, executor: Executor, gates: Callable[[], Gate]
    ) -> None:
        gate = gates()
        start = time.monotonic()
        results = executor.map(fx.wait_for_gate, [gate.path], timeout=SHORT)
        with pytest.raises(TimeoutError):
            next(results)
        assert time.monotonic() - start < SHORT + 2.0

    def test_map_timeout_counts_from_the_map_call(
        self, executor: Executor, gates: Callable[[], Gate]
    ) -> None:
        gate = gates()
        results = executor.map(fx.wait_for_gate, [gate.path], timeout=SHORT)
        time.sleep(SHORT + 0.1)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            next(results)
        assert time.monotonic() - start < 1.0  # the time is up already: no new wait

    @pytest.mark.parametrize("chunksize", [1, 7, 1000])
    def test_map_chunksize(self, executor: Executor, chunksize: int) -> None:
        values = list(executor.map(fx.square, range(50), chunksize=chunksize, timeout=T))
        assert values == [i * i for i in range(50)]

    def test_map_raises_an_item_exception_at_its_position(self, executor: Executor) -> None:
        results = executor.map(fx.fail_at, range(6), [3] * 6, timeout=T)
        assert [next(results) for _ in range(3)] == [0, 10, 20]
        with pytest.raises(ValueError, match="item 3 is bad"):
            next(results)

    # -- shutdown and the with-statement ------------------------------------------------------

    def test_shutdown_wait_true_waits_for_the_work(self, executor: Executor) -> None:
        futures = [executor.submit(fx.nap, 0.1, i) for i in range(4)]
        executor.shutdown(wait=True)
        assert all(f.done() for f in futures)
        assert [f.result(timeout=0) for f in futures] == [0, 1, 2, 3]

    def test_shutdown_wait_false_returns_at_once_and_the_work_completes(
        self, executor: Executor, gates: Callable[[], Gate]
    ) -> None:
        gate = gates()
        futures = [executor.submit(fx.wait_for_gate, gate.path, i) for i in range(3)]
        start = time.monotonic()
        executor.shutdown(wait=False)
        assert time.monotonic() - start < 1.0
        assert not all(f.done() for f in futures)
        gate.open()
        assert [f.result(timeout=T) for f in futures] == [0, 1, 2]

    def test_shutdown_cancel_futures_cancels_pending_work(self, executors: MakeExecutor) -> None:
        executor = executors(1)
        futures = [executor.submit(fx.nap, 0.05, i) for i in range(30)]
        start = time.monotonic()
        executor.shutdown(wait=True, cancel_futures=True)
        assert time.monotonic() - start < 15.0
        assert all(f.done() for f in futures), "shutdown(wait=True) left a future unfinished"
        cancelled = [f for f in futures if f.cancelled()]
        finished = [f for f in futures if not f.cancelled()]
        assert cancelled, "nothing was cancelled though one worker cannot start 30 calls at once"
        for f in finished:
            assert f.result(timeout=0) == futures.index(f)
        for f in cancelled:
            with pytest.raises(CancelledError):
                f.result(timeout=0)

    def test_an_executor_dropped_without_shutdown_finishes_its_work(
        self, make_executor: MakeExecutor
    ) -> None:
        executor = make_executor(2)
        futures = [executor.submit(fx.nap, 0.05, i) for i in range(3)]
        del executor
        gc.collect()
        assert [f.result(timeout=T) for f in futures] == [0, 1, 2]

    def test_a_first_submit_racing_shutdown_is_either_refused_or_finished(
        self, executors: MakeExecutor
    ) -> None:
        # The submit either raises RuntimeError or returns a future that shutdown(wait=True)
        # waits for.  Frequent thread switches and a random head start for the submitting
        # thread make the two calls overlap in many of the rounds.
        rng = random.Random(1234)
        old_interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            for round_ in range(20):
                executor = executors(2)
                submitted: list[Future[int]] = []
                start = threading.Barrier(2, timeout=T)

                def submit_one(ex: Executor = executor, out: list[Any] = submitted) -> None:
                    start.wait()
                    try:
                        out.append(ex.submit(fx.square, 3))
                    except RuntimeError:
                        pass

                thread = threading.Thread(target=submit_one)
                thread.start()
                start.wait()
                spin_until = time.perf_counter() + rng.uniform(0, 0.001)
                while time.perf_counter() < spin_until:
                    pass
                executor.shutdown(wait=True)
                finished = [f.done() for f in submitted]
                thread.join(T)
                if submitted:
                    assert finished == [True], f"round {round_}: shutdown(wait=True) returned " \
                                               "before a submitted call finished"
                    assert submitted[0].result(timeout=T) == 9
        finally:
            sys.setswitchinterval(old_interval)

    def test_submit_after_shutdown_raises_runtime_error(self, executor: Executor) -> None:
        executor.submit(fx.square, 1).result(timeout=T)
        executor.shutdown(wait=True)
        with pytest.raises(RuntimeError):
            executor.submit(fx.square, 2)
        with pytest.raises(RuntimeError):
            list(executor.map(fx.square, [1, 2]))

    def test_submit_after_shutdown_without_any_work_raises_runtime_error(
        self, executor: Executor
    ) -> None:
        executor.shutdown(wait=False)
        with pytest.raises(RuntimeError):
            executor.submit(fx.square, 2)

    def test_shutdown_twice_is_harmless(self, executor: Executor) -> None:
        future = executor.submit(fx.square, 5)
        executor.shutdown(wait=True)
        executor.shutdown(wait=True)
        executor.shutdown(wait=False, cancel_futures=True)
        assert future.result(timeout=0) == 25

    def test_with_statement_waits_and_shuts_down(self, executors: MakeExecutor) -> None:
        executor = executors(2)
        with executor as entered:
            assert entered is executor
            futures = [entered.submit(fx.nap, 0.05, i) for i in range(4)]
        assert all(f.done() for f in futures)
        assert [f.result(timeout=0) for f in futures] == [0, 1, 2, 3]
        with pytest.raises(RuntimeError):
            executor.submit(fx.square, 1)

    def test_with_statement_does_not_swallow_an_exception(self, executors: MakeExecutor) -> None:
        executor = executors(2)
        with pytest.raises(KeyError, match="in the block"):
            with executor:
                futures = [executor.submit(fx.nap, 0.05, i) for i in range(6)]
                raise KeyError("in the block")
        # Finished, failed or cancelled (executors differ), but none left hanging.
        assert all(f.done() for f in futures)
        with pytest.raises(RuntimeError):
            executor.submit(fx.square, 1)

    def test_two_executors_at_once_keep_their_work_apart(self, executors: MakeExecutor) -> None:
        first, second = executors(1), executors(1)
        a = [first.submit(fx.add, i, 1000) for i in range(20)]
        b = [second.submit(fx.add, i, 2000) for i in range(20)]
        assert [f.result(timeout=T) for f in a] == [i + 1000 for i in range(20)]
        assert [f.result(timeout=T) for f in b] == [i + 2000 for i in range(20)]
        first.shutdown(wait=True)
        assert second.submit(fx.square, 9).result(timeout=T) == 81

    # -- wait and as_completed ----------------------------------------------------------------

    def test_wait_first_completed(self, executor: Executor, gates: Callable[[], Gate]) -> None:
        gate = gates()
        fast = executor.submit(fx.square, 2)
        slow = executor.submit(fx.wait_for_gate, gate.path, "slow")
        done, not_done = wait([slow, fast], timeout=T, return_when=FIRST_COMPLETED)
        assert done == {fast} and not_done == {slow}
        gate.open()
        assert slow.result(timeout=T) == "slow"

    def test_wait_all_completed(self, executor: Executor) -> None:
        futures = [executor.submit(fx.nap, 0.05 * (i % 3), i) for i in range(6)]
        done, not_done = wait(futures, timeout=T, return_when=ALL_COMPLETED)
        assert done == set(futures) and not not_done

    def test_wait_first_exception(self, executor: Executor, gates: Callable[[], Gate]) -> None:
        gate = gates()
        bad = executor.submit(fx.raise_value_error, "first exception")
        slow = executor.submit(fx.wait_for_gate, gate.path, "slow")
        done, not_done = wait([slow, bad], timeout=T, return_when=FIRST_EXCEPTION)
        assert done == {bad} and not_done == {slow}
        assert isinstance(bad.exception(timeout=0), ValueError)
        gate.open()

    def test_wait_timeout_returns_the_unfinished(
        self, executor: Executor, gates: Callable[[], Gate]
    ) -> None:
        gate = gates()
        slow = executor.submit(fx.wait_for_gate, gate.path, "slow")
        start = time.monotonic()
        done, not_done = wait([slow], timeout=SHORT)
        assert time.monotonic() - start < SHORT + 2.0
        assert not done and not_done == {slow}

    def test_as_completed_yields_in_completion_order(
        self, executor: Executor, gates: Callable[[], Gate]
    ) -> None:
        gate = gates()
        fast = executor.submit(fx.square, 3)
        slow = executor.submit(fx.wait_for_gate, gate.path, "slow")
        order = as_completed([slow, fast], timeout=T)
        assert next(order) is fast
        gate.open()
        assert next(order) is slow
        with pytest.raises(StopIteration):
            next(order)

    def test_as_completed_timeout_raises_timeout_error_in_time(
        self, executor: Executor, gates: Callable[[], Gate]
    ) -> None:
        gate = gates()
        fast = executor.submit(fx.square, 3)
        slow = executor.submit(fx.wait_for_gate, gate.path, "slow")
        assert fast.result(timeout=T) == 9
        start = time.monotonic()
        seen = []
        with pytest.raises(TimeoutError):
            for future in as_completed([slow, fast], timeout=SHORT):
                seen.append(future)
        assert seen == [fast]
        assert time.monotonic() - start < SHORT + 2.0

    # -- scheduling: what a user of the stdlib pools relies on --------------------------------

    def test_a_cancelled_call_never_runs(
        self, executors: MakeExecutor, gates: Callable[[], Gate], tmp_path: Path
    ) -> None:
        executor = executors(1)
        gate = gates()
        blocker = executor.submit(fx.wait_for_gate, gate.path, "blocker")
        _wait_until(blocker.running, "the first call to start")
        marks = [str(tmp_path / f"ran-{i}") for i in range(6)]
        queued = [executor.submit(fx.touch, mark, i) for i, mark in enumerate(marks)]
        cancelled = [i for i, f in enumerate(queued) if f.cancel()]
        assert len(cancelled) >= len(queued) - self.bound_ahead
        gate.open()
        assert blocker.result(timeout=T) == "blocker"
        for i, future in enumerate(queued):
            if i in cancelled:
                with pytest.raises(CancelledError):
                    future.result(timeout=0)
            else:
                assert future.result(timeout=T) == i
        executor.shutdown(wait=True)
        assert [os.path.exists(mark) for mark in marks] == [
            i not in cancelled for i in range(len(marks))], "a cancelled call ran"

    def test_a_fast_call_submitted_after_a_slow_one_completes_first(
        self, executors: MakeExecutor, gates: Callable[[], Gate]
    ) -> None:
        executor = executors(2)
        gate = gates()
        slow = executor.submit(fx.wait_for_gate, gate.path, "slow")
        fast = executor.submit(fx.square, 5)
        done, not_done = wait([slow, fast], timeout=T, return_when=FIRST_COMPLETED)
        assert done == {fast} and not_done == {slow}
        order = as_completed([slow, fast], timeout=T)
        assert next(order) is fast
        gate.open()
        assert next(order) is slow

    def test_max_workers_calls_run_at_once(self, executors: MakeExecutor, tmp_path: Path) -> None:
        # Each call returns only once all three have started: they must run side by side.
        executor = executors(3)
        room = str(tmp_path / "room")
        futures = [executor.submit(fx.meet, room, 3, i) for i in range(3)]
        assert [f.result(timeout=T) for f in futures] == [0, 1, 2]

    def test_shutdown_cancel_futures_cancels_every_call_not_started(
        self, executors: MakeExecutor, gates: Callable[[], Gate], tmp_path: Path
    ) -> None:
        executor = executors(2)
        gate = gates()
        blockers = [executor.submit(fx.wait_for_gate, gate.path, i) for i in range(2)]
        _wait_until(lambda: all(b.running() for b in blockers), "both workers to be busy")
        marks = [str(tmp_path / f"ran-{i}") for i in range(20)]
        queued = [executor.submit(fx.touch, mark, i) for i, mark in enumerate(marks)]
        executor.shutdown(wait=False, cancel_futures=True)
        gate.open()
        assert [b.result(timeout=T) for b in blockers] == [0, 1]
        # (not wait(): it does not count a future cancelled by shutdown as done)
        _wait_until(lambda: all(f.done() for f in queued), "every call to be done")
        started = [i for i, f in enumerate(queued) if not f.cancelled()]
        assert len(started) <= self.bound_ahead, f"calls {started} ran after cancel_futures"
        for i in started:
            assert queued[i].result(timeout=0) == i
        assert [os.path.exists(mark) for mark in marks] == [i in started for i in range(20)]

    def test_breaking_out_of_map_leaves_at_once(self, executors: MakeExecutor) -> None:
        # 400 calls of 50 ms on 2 workers are 10 s of work; after a break only the calls
        # already started may still run.
        executor = executors(2)
        for i, _ in enumerate(executor.map(fx.nap, [0.05] * 400)):
            if i == 3:
                break
        start = time.monotonic()
        executor.shutdown(wait=True)
        assert time.monotonic() - start < 5.0

    # -- cancel and callbacks -----------------------------------------------------------------

    def test_cancel_pending_work(self, executors: MakeExecutor, gates: Callable[[], Gate]) -> None:
        executor = executors(1)
        gate = gates()
        blocker = executor.submit(fx.wait_for_gate, gate.path, "blocker")
        _wait_until(blocker.running, "the first call to start")
        queued = [executor.submit(fx.square, i) for i in range(5)]
        last = queued[-1]  # one worker busy with the blocker: this one waits
        assert last.cancel() is True
        assert last.cancelled() and last.done() and not last.running()
        with pytest.raises(CancelledError):
            last.result(timeout=0)
        assert last.cancel() is True  # cancelling again is still "cancelled"
        gate.open()
        assert blocker.result(timeout=T) == "blocker"
        assert [f.result(timeout=T) for f in queued[:-1]] == [0, 1, 4, 9]

    def test_many_cancelled_calls_do_not_stall_the_rest(
        self, executors: MakeExecutor, gates: Callable[[], Gate]
    ) -> None:
        executor = executors(1)
        gate = gates()
        blocker = executor.submit(fx.wait_for_gate, gate.path, "blocker")
        _wait_until(blocker.running, "the first call to start")
        queued = [executor.submit(fx.square, i) for i in range(60)]
        cancelled = {i for i, f in enumerate(queued[:50]) if f.cancel()}
        # One busy worker: many are still pending (how many an executor has already taken
        # ahead, e.g. into a batch, is its own business).
        assert len(cancelled) >= 10
        gate.open()
        start = time.monotonic()
        for i, f in enumerate(queued):
            if i in cancelled:
                assert f.cancelled()
            else:
                assert f.result(timeout=T) == i * i
        assert time.monotonic() - start < 5.0

    def test_cancel_finished_work_returns_false(self, executor: Executor) -> None:
        future = executor.submit(fx.square, 2)
        assert future.result(timeout=T) == 4
        assert future.cancel() is False
        assert not future.cancelled()

    def test_done_callback_is_called_once_with_the_future(
        self, executor: Executor, gates: Callable[[], Gate]
    ) -> None:
        gate = gates()
        future = executor.submit(fx.wait_for_gate, gate.path, "value")
        calls: list[Future[Any]] = []
        called = threading.Event()

        def callback(f: Future[Any]) -> None:
            calls.append(f)
            called.set()

        future.add_done_callback(callback)
        assert not calls
        gate.open()
        assert called.wait(T)
        assert future.result(timeout=T) == "value"
        executor.shutdown(wait=True)
        assert calls == [future]

    def test_done_callback_added_after_completion_is_called_at_once(
        self, executor: Executor
    ) -> None:
        future = executor.submit(fx.square, 6)
        assert future.result(timeout=T) == 36
        calls: list[Future[Any]] = []
        future.add_done_callback(calls.append)
        assert calls == [future]

    def test_done_callback_of_a_cancelled_future(
        self, executors: MakeExecutor, gates: Callable[[], Gate]
    ) -> None:
        executor = executors(1)
        gate = gates()
        blocker = executor.submit(fx.wait_for_gate, gate.path, "blocker")
        _wait_until(blocker.running, "the first call to start")
        queued = [executor.submit(fx.square, i) for i in range(5)]
        calls: list[Future[Any]] = []
        queued[-1].add_done_callback(calls.append)
        assert queued[-1].cancel()
        assert calls == [queued[-1]]
        gate.open()

    def test_done_callback_may_submit_more_work(self, executor: Executor) -> None:
        chained: list[int] = []
        finished = threading.Event()

        def then_square_again(first: Future[int]) -> None:
            second = executor.submit(fx.square, first.result())
            second.add_done_callback(lambda f: (chained.append(f.result()), finished.set()))

        executor.submit(fx.square, 3).add_done_callback(then_square_again)
        assert finished.wait(T)
        assert chained == [81]

    def test_a_raising_callback_does_not_break_the_executor(self, executor: Executor) -> None:
        def bad_callback(_: Future[Any]) -> None:
            raise RuntimeError("callback trouble (expected: logged and ignored)")

        futures = [executor.submit(fx.square, i) for i in range(5)]
        for f in futures:
            f.add_done_callback(bad_callback)
        assert [f.result(timeout=T) for f in futures] == [0, 1, 4, 9, 16]
        assert executor.submit(fx.square, 7).result(timeout=T) == 49

    # -- load ---------------------------------------------------------------------------------

    def test_submits_from_many_threads(self, executor: Executor) -> None:
        threads, per_thread = 8, 200
        barrier = threading.Barrier(threads, timeout=T)
        submitted: dict[int, list[Future[int]]] = {}
        errors: list[BaseException] = []

        def submitter(n: int) -> None:
            try:
                barrier.wait()
                submitted[n] = [executor.submit(fx.square, n * 1000 + i)
                                for i in range(per_thread)]
            except BaseException as exc:  # reported below
                errors.append(exc)

        workers = [threading.Thread(target=submitter, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(T)
        assert not errors
        assert sorted(submitted) == list(range(threads))
        all_futures = [f for n in range(threads) for f in submitted[n]]
        assert len({id(f) for f in all_futures}) == threads * per_thread
        done, not_done = wait(all_futures, timeout=T)
        assert not not_done
        for n in range(threads):
            assert [f.result(timeout=0) for f in submitted[n]] == [
                (n * 1000 + i) ** 2 for i in range(per_thread)]

    def test_large_argument_and_result(self, executor: Executor) -> None:
        blob = os.urandom(1024) * (5 * 1024)  # 5 MiB
        assert executor.submit(fx.identity, blob).result(timeout=T) == blob

    def test_many_small_calls_through_map(self, executor: Executor) -> None:
        values = list(executor.map(fx.square, range(10_000), timeout=T))
        assert values == [i * i for i in range(10_000)]


class ProcessContract(_Fixtures):
    """What ``ProcessPoolExecutor`` adds: ``chunksize`` checked, remote traceback as cause."""

    @pytest.mark.parametrize("chunksize", [0, -1])
    def test_map_rejects_a_chunksize_below_one(self, executor: Executor, chunksize: int) -> None:
        with pytest.raises(ValueError):
            executor.map(fx.square, range(3), chunksize=chunksize)

    def test_exception_has_the_remote_traceback_as_cause(self, executor: Executor) -> None:
        future = executor.submit(fx.raise_value_error, "with a traceback")
        with pytest.raises(ValueError) as info:
            future.result(timeout=T)
        cause = info.value.__cause__
        assert cause is not None, "a remote exception must carry its traceback as __cause__"
        text = str(cause)
        lines, first = inspect.getsourcelines(fx.raise_value_error)
        raise_line = first + next(i for i, line in enumerate(lines) if "raise " in line)
        assert f"line {raise_line}, in raise_value_error" in text, text
        assert "ValueError: with a traceback" in text


class RemoteCallablesContract(_Fixtures):
    """What only ``FargateExecutor`` promises.  ``make_executor`` takes settings as keywords."""

    # -- code that only exists in the client --------------------------------------------------

    def test_lambda(self, executor: Executor) -> None:
        assert executor.submit(lambda x, y=1: x * 10 + y, 4, y=2).result(timeout=T) == 42
        assert list(executor.map(lambda s: s.upper(), ["a", "b"], timeout=T)) == ["A", "B"]

    def test_closure_and_nested_function(self, executor: Executor) -> None:
        offset = 100

        def make_adder(n: int) -> Callable[[int], int]:
            def adder(x: int) -> int:
                return x + n + offset

            return adder

        def nested(x: int) -> int:
            def inner(y: int) -> int:
                return y * 2

            return inner(x) + offset

        assert executor.submit(make_adder(5), 1).result(timeout=T) == 106
        assert list(executor.map(nested, [1, 2], timeout=T)) == [102, 104]

    def test_class_and_instance_defined_in_the_test(self, executor: Executor) -> None:
        class Account:
            def __init__(self, owner: str, balance: int):
                self.owner, self.balance = owner, balance

            def deposit(self, amount: int) -> Account:
                return Account(self.owner, self.balance + amount)

        acct = Account("ada", 10)
        result = executor.submit(acct.deposit, 5).result(timeout=T)
        assert type(result) is Account
        assert (result.owner, result.balance) == ("ada", 15)
        rich = executor.submit(Account, "bob", 1_000).result(timeout=T)
        assert isinstance(rich, Account) and rich.balance == 1_000

    def test_main_module_code_from_exec(self, executor: Executor) -> None:
        # What a notebook cell or `python script.py` defines: code whose module is __main__.
        source = textwrap.dedent("""
            import math

            class Point:
                def __init__(self, x, y):
                    self.x, self.y = x, y

                def norm(self):
                    return math.hypot(self.x, self.y)

                def scaled(self, k):
                    return Point(self.x * k, self.y * k)

            def make_point(x, y):
                return Point(x, y)

            SCALE = 3
            triple = lambda p: p.scaled(SCALE)
            """)
        namespace: dict[str, Any] = {"__name__": "__main__"}
        exec(compile(source, "<notebook-cell>", "exec"), namespace)
        point_cls = namespace["Point"]
        p = executor.submit(namespace["make_point"], 3, 4).result(timeout=T)
        assert type(p) is point_cls and (p.x, p.y) == (3, 4)
        assert executor.submit(p.norm).result(timeout=T) == 5.0
        tripled = executor.submit(namespace["triple"], point_cls(1, 2)).result(timeout=T)
        assert type(tripled) is point_cls and (tripled.x, tripled.y) == (3, 6)

    def test_function_from_a_local_module_travels_by_value(
        self, executor: Executor, tmp_path: Path
    ) -> None:
        module = _LocalModule(tmp_path)
        try:
            mod = module.load(factor=3)
            assert executor.submit(mod.compute, 5).result(timeout=T) == 15
            # Over there the module is neither imported nor importable: it came in the pickle.
            assert mod.where() == (True, True)
            assert executor.submit(mod.where).result(timeout=T) == (False, False)
        finally:
            module.forget()
        # Forgotten here too: the function object still travels.
        assert executor.submit(mod.compute, 7).result(timeout=T) == 21

    def test_local_modules_imported_one_after_another(
        self, executor: Executor, tmp_path: Path
    ) -> None:
        # A module is imported, used and forgotten (as autoreload or a test does); then another.
        first = _LocalModule(tmp_path / "one")
        try:
            assert executor.submit(first.load(factor=2).compute, 5).result(timeout=T) == 10
        finally:
            first.forget()
        second = _LocalModule(tmp_path / "two")
        try:
            mod = second.load(factor=4)
            assert executor.submit(mod.compute, 5).result(timeout=T) == 20
        finally:
            second.forget()

    def test_many_distinct_closures_of_one_function(self, executor: Executor) -> None:
        # Same code, different captured values: each must run with its own.
        def scaler(k: int) -> Callable[[int], int]:
            return lambda x: x * k

        futures = [executor.submit(scaler(k), 10) for k in range(30)]
        assert [f.result(timeout=T) for f in futures] == [10 * k for k in range(30)]

    def test_function_from_a_local_package_submodule_travels_by_value(
        self, executor: Executor, tmp_path: Path
    ) -> None:
        name = f"sbx_localpkg_{uuid.uuid4().hex[:8]}"
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("OFFSET = 1000\n")
        (package / "tools.py").write_text(textwrap.dedent(f"""
            from {name} import OFFSET

            def shift(x):
                return x + OFFSET
            """))
        sys.path.insert(0, str(tmp_path))
        importlib.invalidate_caches()
        try:
            tools = importlib.import_module(f"{name}.tools")
            assert executor.submit(tools.shift, 5).result(timeout=T) == 1005
        finally:
            sys.path.remove(str(tmp_path))
            for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[module]

    def test_custom_exception_defined_in_the_test_is_caught_by_its_class(
        self, executor: Executor
    ) -> None:
        class QuotaExceeded(Exception):
            def __init__(self, user: str, limit: int):
                super().__init__(user, limit)
                self.user, self.limit = user, limit

        def check(user: str) -> None:
            raise QuotaExceeded(user, 3)

        future = executor.submit(check, "ada")
        try:
            future.result(timeout=T)
        except QuotaExceeded as exc:
            assert (exc.user, exc.limit) == ("ada", 3)
            assert exc.args == ("ada", 3)
        else:  # pragma: no cover - the assertion is the point
            pytest.fail("the remote QuotaExceeded was not caught as QuotaExceeded")

    # -- serialization errors -----------------------------------------------------------------

    def test_unpicklable_argument_fails_quickly_naming_the_argument(
        self, executor: Executor
    ) -> None:
        from starburst_executor import SerializationError

        start = time.monotonic()
        future = executor.submit(fx.identity, threading.Lock())
        with pytest.raises(SerializationError) as info:
            future.result(timeout=T)
        assert time.monotonic() - start < 10.0
        assert "args[0]" in str(info.value) and "lock" in str(info.value), str(info.value)
        by_keyword = executor.submit(fx.describe, 1, b=threading.Lock())
        with pytest.raises(SerializationError, match=r"kwargs\['b'\]"):
            by_keyword.result(timeout=T)
        assert executor.submit(fx.square, 3).result(timeout=T) == 9

    def test_unpicklable_argument_in_map_fails_only_its_own_call(
        self, executor: Executor, tmp_path: Path
    ) -> None:
        from starburst_executor import SerializationError

        paths = [str(tmp_path / f"done-{i}") for i in range(5)]
        items: list[Any] = list(paths)
        items[2] = threading.Lock()
        # chunksize puts all five calls in one batch: the lock must not sink the other four.
        results = executor.map(fx.touch_each, items, range(5), chunksize=5, timeout=T)
        assert [next(results), next(results)] == [0, 1]
        with pytest.raises(SerializationError, match=r"args\[0\].*lock"):
            next(results)
        _wait_until(lambda: all(os.path.exists(p) for i, p in enumerate(paths) if i != 2),
                    "the calls after the unpicklable one to run")
        # The same in a map whose last item is the bad one: every result before it arrives.
        tail = executor.map(fx.identity, [1, 2, 3, threading.Lock()], timeout=T)
        assert [next(tail) for _ in range(3)] == [1, 2, 3]
        with pytest.raises(SerializationError):
            next(tail)

    def test_unpicklable_function_names_the_function(self, executor: Executor) -> None:
        from starburst_executor import SerializationError

        lock = threading.Lock()

        def holds_a_lock(x: int) -> int:
            with lock:
                return x

        future = executor.submit(holds_a_lock, 1)
        with pytest.raises(SerializationError, match="holds_a_lock"):
            future.result(timeout=T)
        assert executor.submit(fx.square, 2).result(timeout=T) == 4

    def test_exception_with_unpicklable_args_becomes_remote_error(
        self, executor: Executor
    ) -> None:
        from starburst_executor import RemoteError

        def fails_with_a_lock() -> None:
            raise ValueError("cannot travel", threading.Lock())

        with pytest.raises(RemoteError) as info:
            executor.submit(fails_with_a_lock).result(timeout=T)
        assert info.value.type_name == "ValueError"
        assert "cannot travel" in info.value.message
        assert "fails_with_a_lock" in info.value.traceback_text
        assert executor.submit(fx.square, 2).result(timeout=T) == 4

    def test_exception_that_cannot_be_rebuilt_becomes_remote_error(
        self, executor: Executor
    ) -> None:
        from starburst_executor import RemoteError

        class NeedsKeyword(Exception):
            def __init__(self, *, code: int):  # pickle rebuilds exceptions from .args: fails
                super().__init__(f"code {code}")

        def fails_oddly() -> None:
            raise NeedsKeyword(code=5)

        with pytest.raises(RemoteError) as info:
            executor.submit(fails_oddly).result(timeout=T)
        assert "NeedsKeyword" in info.value.type_name
        assert info.value.message == "code 5"
        assert executor.submit(fx.square, 2).result(timeout=T) == 4

    def test_unpicklable_result_names_its_type(self, executor: Executor) -> None:
        from starburst_executor import SerializationError

        future = executor.submit(fx.make_lock)
        with pytest.raises(SerializationError) as info:
            future.result(timeout=T)
        assert "lock" in str(info.value), str(info.value)
        assert executor.submit(fx.square, 2).result(timeout=T) == 4

    def test_exception_that_cannot_be_unpickled_here_becomes_remote_error(
        self, executor: Executor, tmp_path: Path
    ) -> None:
        from starburst_executor import RemoteError

        # The exception's class lives in a module only the worker has (a package that is
        # installed in the image but not on the client, say).
        remote_dir = str(tmp_path / "only-on-the-worker")
        name = f"sbx_remote_only_{uuid.uuid4().hex[:8]}"

        def raise_remote_only(message: str) -> None:
            os.makedirs(remote_dir, exist_ok=True)
            with open(os.path.join(remote_dir, name + ".py"), "w") as f:
                f.write("class RemoteOnlyError(Exception):\n    pass\n")
            sys.path.insert(0, remote_dir)
            module = importlib.import_module(name)
            raise module.RemoteOnlyError(message)

        future = executor.submit(raise_remote_only, "only over there")
        with pytest.raises(RemoteError) as info:
            future.result(timeout=T)
        error = info.value
        assert error.type_name == f"{name}.RemoteOnlyError"
        assert error.message == "only over there"
        assert f"{name}.RemoteOnlyError" in str(error) and "only over there" in str(error)
        assert "raise_remote_only" in error.traceback_text
        assert name not in sys.modules

    # -- what FargateExecutor reports ---------------------------------------------------------

    def test_future_metadata(self, executor: Executor) -> None:
        future = executor.submit(fx.nap, 0.01, "x")
        assert future.result(timeout=T) == "x"
        meta = future.metadata  # type: ignore[attr-defined]
        assert meta.batch_id and meta.worker_id
        assert meta.attempts >= 1
        assert meta.started_at is not None and meta.finished_at is not None
        assert meta.started_at <= meta.finished_at
        assert meta.submitted_at <= meta.finished_at + 1.0  # worker clock = ours, locally

    def test_usage_counts_calls_and_batches(self, executor: Executor) -> None:
        assert list(executor.map(fx.square, range(20), chunksize=5, timeout=T)) == [
            i * i for i in range(20)]
        assert executor.submit(fx.square, 2).result(timeout=T) == 4
        usage = executor.usage()  # type: ignore[attr-defined]
        assert usage.calls == 21
        assert 5 <= usage.batches <= 21
        assert usage.tasks_launched >= 1
        assert usage.bytes_uploaded > 0 and usage.bytes_downloaded > 0

    def test_a_function_is_uploaded_once(self, executor: Executor) -> None:
        blob = os.urandom(2 * 1024 * 1024)  # captured: makes the pickled function 2 MiB

        def size_plus(i: int) -> int:
            return len(blob) + i

        for i in range(8):  # one call at a time: eight batches, one function
            assert executor.submit(size_plus, i).result(timeout=T) == len(blob) + i
        usage = executor.usage()  # type: ignore[attr-defined]
        assert usage.batches >= 8
        assert len(blob) <= usage.bytes_uploaded < 2 * len(blob)

    def test_workers_are_reused_across_maps(self, executor: Executor) -> None:
        for _ in range(3):
            assert list(executor.map(fx.square, range(100), timeout=T)) == [
                i * i for i in range(100)]
        usage = executor.usage()  # type: ignore[attr-defined]
        assert 1 <= usage.tasks_launched <= 2  # max_workers: a cold start once per worker

    def test_progress_bar_is_drawn_on_stderr(
        self, executors: MakeExecutor, capsys: pytest.CaptureFixture[str]
    ) -> None:
        executor = executors(2, progress=True)
        assert list(executor.map(fx.square, range(5), timeout=T)) == [0, 1, 4, 9, 16]
        executor.shutdown(wait=True)
        err = capsys.readouterr().err
        assert "5/5" in err, err
        assert "starburst" in err

    def test_results_are_sent_as_calls_finish_not_after_the_batch(
        self, executor: Executor, gates: Callable[[], Gate]
    ) -> None:
        # "write results in parts as they finish" (DESIGN.md): a finished call's result must
        # not wait for a slow call behind it in the same batch.
        gate = gates()
        results = executor.map(fx.gated_or_fast, [None, gate.path], ["first", "second"],
                               chunksize=2, timeout=4.0)
        assert next(results) == "first"
        gate.open()
        assert next(results) == "second"


class _LocalModule:
    """A module file that is not installed: created under a directory, put on sys.path."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.name = f"sbx_local_{uuid.uuid4().hex[:8]}"

    def load(self, factor: int) -> Any:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"{self.name}.py").write_text(textwrap.dedent(f"""
            import importlib.util
            import sys

            FACTOR = {factor}

            def compute(x):
                return x * FACTOR

            def where():
                return __name__ in sys.modules, importlib.util.find_spec(__name__) is not None
            """))
        sys.path.insert(0, str(self.directory))
        importlib.invalidate_caches()
        return importlib.import_module(self.name)

    def forget(self) -> None:
        while str(self.directory) in sys.path:
            sys.path.remove(str(self.directory))
        sys.modules.pop(self.name, None)


def _wait_until(condition: Callable[[], bool], what: str, limit: float = T) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit:g}s waiting for {what}")
        time.sleep(0.005)
