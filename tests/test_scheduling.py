"""Scheduling on the local backend: per-function estimates and straggler reruns.

Armed on events (files a call leaves, gates a test opens), never on the machine's speed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path

import pytest

from starburst_executor import FargateExecutor

from .contracts import _exec_funcs as fx

T = 30.0


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "gate")
    yield path
    fx.touch(path)  # never leave a gated call waiting


def test_a_quick_readiness_call_does_not_pack_a_slower_function(tmp_path: Path) -> None:
    # meet() returns only once two calls of it run side by side: packed into one batch on one
    # worker, because a quick call of another function was measured, they would never meet.
    with FargateExecutor(max_workers=2, backend="local") as ex:
        assert ex.submit(fx.square, 2).result(timeout=T) == 4
        room = str(tmp_path / "room")
        assert list(ex.map(fx.meet, [room] * 6, [2] * 6, range(6))) == list(range(6))


def test_a_straggler_is_rerun_on_an_idle_worker_and_the_first_result_wins(
    tmp_path: Path, gate: str
) -> None:
    mark = str(tmp_path / "mark")
    with FargateExecutor(max_workers=2, backend="local") as ex:
        fx.touch(mark)
        assert ex.submit(fx.slow_once, mark, gate, "warm").result(timeout=T) == "warm"
        os.unlink(mark)  # its duration is known (quick): the next call straggles
        straggler = ex.submit(fx.slow_once, mark, gate, "done")
        # The first copy waits for the gate, which stays shut: only a rerun can finish it.
        assert straggler.result(timeout=T) == "done"
        assert ex.usage().reruns == 1
        fx.touch(gate)
        assert ex.submit(fx.square, 3).result(timeout=T) == 9  # the executor carries on


def test_reruns_can_be_turned_off(tmp_path: Path, gate: str) -> None:
    mark = str(tmp_path / "mark")
    with FargateExecutor(max_workers=2, backend="local", rerun_stragglers=False) as ex:
        fx.touch(mark)
        assert ex.submit(fx.slow_once, mark, gate, "warm").result(timeout=T) == "warm"
        os.unlink(mark)
        straggler = ex.submit(fx.slow_once, mark, gate, "done")
        while not os.path.exists(mark):  # the first (only) copy has started
            assert not straggler.done()
            wait([straggler], timeout=0.01)
        assert not wait([straggler], timeout=1.0).done
        assert ex.usage().reruns == 0
        fx.touch(gate)
        assert straggler.result(timeout=T) == "done"
