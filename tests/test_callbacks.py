"""Done-callbacks never break the executor: whatever they raise on the manager thread, even
``SystemExit`` or ``KeyboardInterrupt``, is logged as the stdlib logs callback exceptions."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from starburst_executor import FargateExecutor
from starburst_executor._future import CallMetadata, StarburstFuture, shield_callbacks

from .contracts import _exec_funcs as fx

T = 60


def _raiser(exc: BaseException) -> Any:
    def callback(_: Future[Any]) -> None:
        raise exc

    return callback


@pytest.mark.parametrize("exc", [RuntimeError("boom"), SystemExit(3), KeyboardInterrupt()],
                         ids=["Exception", "SystemExit", "KeyboardInterrupt"])
def test_a_raising_callback_is_logged_and_the_executor_goes_on(
    exc: BaseException, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = tmp_path / "gate"
    after = threading.Event()
    with FargateExecutor(max_workers=1, backend="local") as executor:
        # Held until the callbacks are in place, so the manager thread is the one running them.
        future = executor.submit(fx.wait_for_gate, str(gate), 5)
        future.add_done_callback(_raiser(exc))
        future.add_done_callback(lambda _: after.set())  # the next callback still runs
        with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
            gate.touch()
            assert future.result(timeout=T) == 5
            assert after.wait(T)
        assert executor.submit(fx.square, 7).result(timeout=T) == 49
        later = list(executor.map(fx.square, range(10)))
    assert later == [x * x for x in range(10)]
    records = [r for r in caplog.records if r.name == "concurrent.futures"]
    assert records and records[0].getMessage().startswith("exception calling callback for")
    assert records[0].exc_info is not None and records[0].exc_info[1] is exc


def test_callbacks_of_futures_cancelled_by_the_manager_are_shielded_too(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    executor = FargateExecutor(max_workers=1, backend="local")
    running = executor.submit(fx.wait_for_gate, str(gate))
    queued = executor.submit(fx.square, 2)
    queued.add_done_callback(_raiser(SystemExit(4)))
    running.add_done_callback(_raiser(KeyboardInterrupt()))
    try:
        executor._terminate("test")  # what Ctrl-C in the with-block does
        assert running.done() and queued.done()
    finally:
        gate.touch()
        executor.shutdown(wait=True)


def test_outside_a_shielded_thread_the_stdlib_rules_hold() -> None:
    future: StarburstFuture[int] = StarburstFuture(CallMetadata(0, 0.0))
    future.add_done_callback(_raiser(SystemExit(5)))
    with pytest.raises(SystemExit):
        future.set_result(1)

    outcome: list[str] = []

    def in_a_shielded_thread() -> None:
        shield_callbacks()
        other: StarburstFuture[int] = StarburstFuture(CallMetadata(1, 0.0))
        other.add_done_callback(_raiser(KeyboardInterrupt()))
        other.add_done_callback(lambda _: outcome.append("second"))
        other.set_result(2)
        outcome.append("survived")

    thread = threading.Thread(target=in_a_shielded_thread)
    thread.start()
    thread.join(T)
    assert outcome == ["second", "survived"]
