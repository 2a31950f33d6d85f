"""_gc: collection paused around bulk work, restored by the last user, never forced on."""

from __future__ import annotations

import gc
import threading

from starburst_executor import _gc


def test_paused_defers_collection_and_restores_it() -> None:
    assert gc.isenabled()
    with _gc.paused():
        assert not gc.isenabled()
        with _gc.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block still runs
    assert gc.isenabled()
    with _gc.paused(False):
        assert gc.isenabled()


def test_a_collector_disabled_by_the_program_stays_disabled() -> None:
    gc.disable()
    try:
        with _gc.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_threads_share_one_pause() -> None:
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with _gc.paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(10)
    with _gc.paused():
        pass
    assert not gc.isenabled()  # the other thread is still in its block
    leave.set()
    thread.join(10)
    assert gc.isenabled()
