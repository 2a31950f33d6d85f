"""Callables for the executor contract suite.

They live at module level so that every executor can run them: ``ProcessPoolExecutor``
pickles functions by reference, ``FargateExecutor`` ships this (not installed) module by value.

A *gate* is a file path: :func:`wait_for_gate` blocks until the test creates the file, which
makes "this call is still running" a fact instead of a guess about timing.  The wait is bounded
(:data:`GATE_LIMIT`), so a gate a test forgot to open fails the call, not the whole run.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

GATE_LIMIT = 10.0


class GateTimeout(RuntimeError):
    """A gated call gave up waiting: the test never opened its gate."""


class ContractError(Exception):
    """A custom exception with its own constructor, attributes and ``__str__``."""

    def __init__(self, code: int, detail: str):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        return f"[{self.code}] {self.detail}"


class Multiplier:
    """A callable object."""

    def __init__(self, k: int):
        self.k = k

    def __call__(self, x: int) -> int:
        return self.k * x


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def identity(x: Any) -> Any:
    return x


def describe(a: Any, b: Any = None, *, c: Any = None) -> tuple[Any, Any, Any]:
    return (a, b, c)


def nap(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def raise_value_error(*args: Any) -> None:
    raise ValueError(*args)  # the remote-traceback test looks for this line


def raise_contract_error(code: int, detail: str) -> None:
    raise ContractError(code, detail)


def fail_at(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x * 10


def wait_for_gate(path: str, value: Any = None) -> Any:
    """Return ``value`` once the file ``path`` exists; raise GateTimeout after GATE_LIMIT."""
    deadline = time.monotonic() + GATE_LIMIT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise GateTimeout(f"gate {path} was not opened within {GATE_LIMIT:g}s")
        time.sleep(0.005)
    return value


def gated_or_fast(path: str | None, value: Any) -> Any:
    """``value`` at once if ``path`` is None, else once the gate ``path`` opens."""
    return value if path is None else wait_for_gate(path, value)


def touch(path: str, value: Any = None) -> Any:
    with open(path, "w"):
        pass
    return value


def touch_each(path: Any, value: Any = None) -> Any:
    """``touch`` for map: ``path`` may be anything; only strings leave a file behind."""
    if isinstance(path, str):
        touch(path)
    return value


def meet(directory: str, count: int, value: Any = None) -> Any:
    """Return ``value`` once ``count`` calls of ``meet`` on ``directory`` have started (each
    leaves a file there), so it returns only if that many calls run at the same time."""
    os.makedirs(directory, exist_ok=True)
    touch(os.path.join(directory, f"{os.getpid()}-{threading.get_ident()}-{time.time_ns()}"))
    deadline = time.monotonic() + GATE_LIMIT
    while len(os.listdir(directory)) < count:
        if time.monotonic() > deadline:
            raise GateTimeout(f"only {len(os.listdir(directory))} of {count} calls met")
        time.sleep(0.005)
    return value


def slow_once(mark: str, gate: str, value: Any = None) -> Any:
    """The first call (no ``mark`` yet) leaves the mark and waits for ``gate``; any later call
    returns at once: a straggler that a second copy overtakes."""
    if os.path.exists(mark):
        return value
    touch(mark)
    return wait_for_gate(gate, value)


def make_lock() -> Any:
    return threading.Lock()
