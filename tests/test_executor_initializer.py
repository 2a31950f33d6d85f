"""``initializer``, ``initargs``, ``max_tasks_per_child`` and ``mp_context`` as
``ProcessPoolExecutor`` takes them (in its positional order), on the local backend; the cases
ProcessPool also runs are run on it too, which proves the tests."""

from __future__ import annotations

import collections
import inspect
import multiprocessing
import os
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from starburst_executor import FargateExecutor, InitializerFailed

T = 60
_state = None


def init_worker(directory: str, tag: str) -> None:
    """Note that it ran in this process, and set a global the calls read."""
    global _state
    with open(Path(directory) / f"init-{os.getpid()}", "a") as f:
        f.write("x")
    _state = tag


def where(x: int) -> tuple[int, Any, int]:
    return os.getpid(), _state, x


def failing_init() -> None:
    raise FileNotFoundError("m.bin")


KINDS: dict[str, type[Executor]] = {"process": ProcessPoolExecutor, "local": FargateExecutor}


@pytest.fixture
def make() -> Iterator[Callable[..., Executor]]:
    """make(kind, *args, **kwargs): an executor, shut down after the test."""
    made: list[Executor] = []

    def new(kind: str, *args: Any, **kwargs: Any) -> Executor:
        if kind == "local":
            kwargs["backend"] = "local"
        executor = KINDS[kind](*args, **kwargs)
        made.append(executor)
        return executor

    yield new
    for executor in made:
        executor.shutdown(wait=True, cancel_futures=True)


def _inits(directory: Path) -> dict[int, str]:
    return {int(p.name.split("-")[1]): p.read_text() for p in directory.glob("init-*")}


def test_the_positional_order_is_process_pools() -> None:
    ours = inspect.signature(FargateExecutor).parameters
    theirs = inspect.signature(ProcessPoolExecutor).parameters
    positional = [n for n, p in theirs.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["max_workers", "mp_context", "initializer", "initargs"]
    assert [n for n, p in ours.items() if p.kind is p.POSITIONAL_OR_KEYWORD] == positional
    assert ours["max_tasks_per_child"].kind is inspect.Parameter.KEYWORD_ONLY
    for name in ("cpu", "memory", "backend", "progress"):
        assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("kind", KINDS)
def test_the_initializer_runs_once_in_each_worker_before_its_calls(
    kind: str, make: Callable[..., Executor], tmp_path: Path
) -> None:
    executor = make(kind, 2, None, init_worker, (str(tmp_path), "ready"))
    results = list(executor.map(where, range(20)))
    assert [x for _, _, x in results] == list(range(20))
    assert {state for _, state, _ in results} == {"ready"}
    inits = _inits(tmp_path)
    assert {pid for pid, _, _ in results} <= set(inits)
    assert set(inits.values()) == {"x"}  # once per worker


def test_main_module_globals_set_by_the_initializer_are_seen_by_the_calls(
    make: Callable[..., Executor]
) -> None:
    # The trap: init() and predict() from __main__ are pickled separately, each with its own
    # copy of the module's globals; what init() assigns must still reach predict().
    source = textwrap.dedent("""
        _model = None

        def load_model(path):
            global _model, _loads
            _model = {"path": path}
            _loads = globals().get("_loads", 0) + 1

        def predict(x):
            return (_model["path"], _loads, x)
        """)
    main: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "<notebook-cell>", "exec"), main)
    executor = make("local", 1, None, main["load_model"], ("m.bin",))
    assert executor.submit(main["predict"], 1).result(timeout=T) == ("m.bin", 1, 1)
    assert list(executor.map(main["predict"], range(3))) == [("m.bin", 1, x) for x in range(3)]


@pytest.mark.parametrize("kind", KINDS)
def test_an_initializer_that_raises_breaks_the_executor(
    kind: str, make: Callable[..., Executor]
) -> None:
    executor = make(kind, 2, initializer=failing_init)
    futures = []
    for x in range(6):
        try:
            futures.append(executor.submit(where, x))
        except BrokenExecutor:  # ProcessPoolExecutor may break while they are submitted
            assert kind == "process"
            break
    for future in futures:
        assert isinstance(future.exception(timeout=T), BrokenExecutor)
    with pytest.raises(BrokenExecutor):
        executor.submit(where, 7)
    if kind == "local":
        error = futures[0].exception()
        assert isinstance(error, InitializerFailed)
        assert "the initializer failing_init raised FileNotFoundError: m.bin" in str(error)
        assert "failing_init" in str(error.__cause__)  # the remote traceback
        with pytest.raises(InitializerFailed, match="FileNotFoundError: m.bin"):
            executor.submit(where, 8)


# Not run on ProcessPoolExecutor: on Python 3.11 this very test hangs in it (max_workers=1 with
# max_tasks_per_child; a CPython bug, seen while writing the test).
def test_max_tasks_per_child_replaces_a_worker_after_that_many_calls(
    make: Callable[..., Executor], tmp_path: Path
) -> None:
    executor = make("local", 1, initializer=init_worker, initargs=(str(tmp_path), "ready"),
                    max_tasks_per_child=3)
    results = list(executor.map(where, range(10)))
    assert [(state, x) for _, state, x in results] == [("ready", x) for x in range(10)]
    per_worker = collections.Counter(pid for pid, _, _ in results)
    assert max(per_worker.values()) <= 3 and len(per_worker) >= 4
    assert set(_inits(tmp_path).values()) == {"x"}  # each fresh worker ran the initializer


def test_max_tasks_per_child_caps_batches_and_loses_nothing(
    make: Callable[..., Executor], tmp_path: Path
) -> None:
    executor = make("local", 2, max_tasks_per_child=4)
    assert isinstance(executor, FargateExecutor)
    results = list(executor.map(where, range(30), chunksize=10))
    assert [x for _, _, x in results] == list(range(30))
    per_worker = collections.Counter(pid for pid, _, _ in results)
    assert max(per_worker.values()) <= 4 and len(per_worker) >= 8
    usage = executor.usage()
    assert usage.retries == 0  # a worker that retires is not a lost batch
    assert usage.batches >= 8


def test_mp_context_is_accepted_and_has_no_effect(make: Callable[..., Executor]) -> None:
    executor = make("local", 1, multiprocessing.get_context("spawn"))
    assert executor.submit(where, 3).result(timeout=T)[2] == 3


@pytest.mark.parametrize("kind", KINDS)
def test_bad_arguments_are_refused_as_process_pool_does(kind: str) -> None:
    extra = {"backend": "local"} if kind == "local" else {}
    with pytest.raises(TypeError):
        KINDS[kind](1, initializer=3, **extra)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        KINDS[kind](1, max_tasks_per_child=0, **extra)
