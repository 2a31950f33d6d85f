from __future__ import annotations

import threading

import pytest

from starburst_executor.engine.fanout import Fanout

from .fakes import memory_store, remote_memory_store


def test_a_local_store_runs_each_call_on_the_callers_thread() -> None:
    fanout = Fanout(memory_store())
    threads = fanout.each(lambda i: (i, threading.get_ident()), [1, 2, 3])
    assert not fanout.remote
    assert threads == [(i, threading.get_ident()) for i in (1, 2, 3)]


def test_a_remote_stores_round_trips_overlap_and_come_back_in_order() -> None:
    fanout = Fanout(remote_memory_store())
    barrier = threading.Barrier(3, timeout=10)  # one after the other, it would break

    def call(i: int) -> int:
        barrier.wait()
        return i * 10

    try:
        assert fanout.remote
        assert fanout.each(call, [1, 2, 3]) == [10, 20, 30]
    finally:
        fanout.close()


def test_an_error_is_raised_once_every_call_ended() -> None:
    fanout = Fanout(remote_memory_store())
    ended: list[int] = []
    release = threading.Event()

    def call(i: int) -> int:
        if i == 0:
            raise OSError("no connection")
        release.wait(10)
        ended.append(i)
        return i

    timer = threading.Timer(0.05, release.set)
    timer.start()
    try:
        with pytest.raises(OSError, match="no connection"):
            fanout.each(call, [0, 1, 2])
        assert sorted(ended) == [1, 2]
    finally:
        timer.cancel()
        fanout.close()
