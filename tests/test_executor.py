"""FargateExecutor's own surface beyond the contract suite: lazy map input, leaving the block."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable

import pytest

from starburst_executor import FargateExecutor


def _slow_square(x: int) -> int:
    time.sleep(0.2)
    return x * x


def _square(x: int) -> int:
    return x * x


MAKERS: dict[str, Callable[[], Executor]] = {
    "thread": lambda: ThreadPoolExecutor(2),
    "process": lambda: ProcessPoolExecutor(2),
    "local": lambda: FargateExecutor(max_workers=2, backend="local"),
}


@pytest.mark.parametrize("kind", MAKERS)
def test_an_exception_in_the_block_waits_for_the_submitted_work(kind: str) -> None:
    saved: list[int] = []
    lock = threading.Lock()

    def save(future: Any) -> None:
        with lock:
            saved.append(future.result())

    with pytest.raises(ValueError, match="in the block"):
        with MAKERS[kind]() as executor:
            for x in range(4):
                executor.submit(_slow_square, x).add_done_callback(save)
            raise ValueError("in the block")
    assert sorted(saved) == [0, 1, 4, 9]


class _Counted:
    """An endless input that counts how far it was read."""

    def __init__(self) -> None:
        self.read = 0

    def __iter__(self) -> Iterator[int]:
        for x in itertools.count():
            self.read = x + 1
            yield x


def test_map_with_buffersize_reads_an_endless_input_lazily() -> None:
    source = _Counted()
    with FargateExecutor(max_workers=2, backend="local") as executor:
        results = executor.map(_square, source, buffersize=3)
        assert source.read == 3
        assert next(results) == 0
        assert source.read == 4  # one more submitted for each result taken
        assert list(itertools.islice(results, 9)) == [x * x for x in range(1, 10)]
        assert source.read == 13
        del results  # the 3 calls still buffered are cancelled or finish; none is added


def test_map_with_buffersize_zips_several_inputs_and_keeps_order() -> None:
    with FargateExecutor(max_workers=2, backend="local") as executor:
        got = list(executor.map(pow, range(20), itertools.repeat(2), buffersize=4, chunksize=2))
    assert got == [x * x for x in range(20)]


@pytest.mark.parametrize("buffersize", [0, -1, 1.5])
def test_map_rejects_a_bad_buffersize(buffersize: Any) -> None:
    with FargateExecutor(max_workers=1, backend="local") as executor:
        with pytest.raises(ValueError, match="buffersize"):
            executor.map(_square, range(3), buffersize=buffersize)


def _failing_input(n: int) -> Iterator[int]:
    yield from range(n)
    raise LookupError("the input broke")


@pytest.mark.parametrize("kind", MAKERS)
def test_an_input_that_fails_midway_fails_map_and_the_executor_goes_on(kind: str) -> None:
    # map() submits a long input in slices: the error still reaches the caller of map().
    with MAKERS[kind]() as executor:
        with pytest.raises(LookupError, match="the input broke"):
            executor.map(_square, _failing_input(12_500))
        assert list(executor.map(_square, range(2500))) == [x * x for x in range(2500)]
