"""Pausing the garbage collector around bulk work on many new objects.

Thousands of futures, calls and result records allocated at once trigger collections that
traverse every object of the program, which can cost more than the objects themselves.
:func:`paused` defers collection for such a stretch (milliseconds), shared by the threads
that use it: the collector runs again once the last of them is done, if it was running before
the first began.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["paused"]

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextlib.contextmanager
def paused(when: bool = True) -> Iterator[None]:
    """Defer garbage collection inside the block (only ``when`` is true)."""
    global _depth, _was_enabled
    if not when:
        yield
        return
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
