"""The worker's part of ``initializer``: run once before the first call, the globals it sets
seen by functions pickled on their own (the ``__main__`` trap), a failure reported through the
batch's results."""

from __future__ import annotations

import functools
import itertools
import textwrap
import threading
from typing import Any

import cloudpickle
import pytest

from starburst_executor import _keys, payload
from starburst_executor._initializer import Initializer, pickle_initializer
from starburst_executor.errors import InitializerFailed
from starburst_executor.storage.memory import MemoryStore
from starburst_executor.worker import Worker

from .contracts._wire import SECRET, assign, put_batch, read_part

_names = itertools.count()

# What a notebook or `python script.py` defines: every function's module is __main__, so
# cloudpickle ships each by value, with its own copy of the globals it uses.
MAIN_SOURCE = textwrap.dedent("""
    _model = None
    calls = 0

    def load_model(path, scale=1):
        global _model, _scale
        _model = "loaded " + path
        _scale = scale

    def predict(x):
        global calls
        calls += 1
        return (_model, x * _scale, calls)

    def helper():
        return _model

    def predict_via_helper(x):
        return (helper(), x)

    class Model:
        def __call__(self, x):
            return (_model, x)

        def method(self, x):
            return (_model, x)

    def failing_init():
        raise FileNotFoundError("m.bin")

    def exiting_init():
        raise SystemExit(3)
    """)


@pytest.fixture
def main() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(MAIN_SOURCE, "<notebook-cell>", "exec"), namespace)
    return namespace


def _travel(obj: Any) -> Any:
    """``obj`` as a worker gets it: pickled on its own."""
    return cloudpickle.loads(cloudpickle.dumps(obj))


def test_the_trap_separately_pickled_main_functions_have_separate_globals(
    main: dict[str, Any]
) -> None:
    init, predict = _travel(main["load_model"]), _travel(main["predict"])
    init("m.bin", 2)
    with pytest.raises(NameError):  # _scale was never defined where predict lives
        predict(1)
    assert init.__globals__ is not predict.__globals__


def test_globals_the_initializer_sets_are_seen_by_functions_loaded_after(
    main: dict[str, Any]
) -> None:
    initializer = Initializer(_travel(main["load_model"]), ("m.bin", 10))
    assert initializer.run("w1") is None
    predict = _travel(main["predict"])
    initializer.share(predict)
    assert predict(2) == ("loaded m.bin", 20, 1)
    assert predict(3) == ("loaded m.bin", 30, 2)  # the calls' own globals stay theirs


def test_a_helper_pickled_with_the_function_sees_them_too(main: dict[str, Any]) -> None:
    initializer = Initializer(_travel(main["load_model"]), ("m.bin",))
    initializer.run("w1")
    fn = _travel(main["predict_via_helper"])
    initializer.share(fn)
    assert fn(1) == ("loaded m.bin", 1)


@pytest.mark.parametrize("wrap", ["partial", "callable object", "bound method"])
def test_partials_callable_objects_and_methods_see_them(main: dict[str, Any], wrap: str) -> None:
    initializer = Initializer(_travel(functools.partial(main["load_model"], "p.bin")), ())
    initializer.run("w1")
    model = main["Model"]()
    obj = {"partial": functools.partial(main["predict_via_helper"], 5),
           "callable object": functools.partial(model, 5),
           "bound method": functools.partial(model.method, 5)}[wrap]
    fn = _travel(obj)
    initializer.share(fn)
    assert fn()[0] == "loaded p.bin"


def test_globals_the_initializer_did_not_rebind_are_the_calls_own(main: dict[str, Any]) -> None:
    initializer = Initializer(_travel(main["load_model"]), ("m.bin",))
    initializer.run("w1")
    main["calls"] = 41  # changed on the client after the initializer was pickled
    predict = _travel(main["predict"])
    initializer.share(predict)
    assert predict(1)[2] == 42


def test_functions_of_other_modules_are_left_alone(main: dict[str, Any]) -> None:
    initializer = Initializer(_travel(main["load_model"]), ("m.bin",))
    initializer.run("w1")
    initializer.share(textwrap.dedent)  # an importable module's function: its real globals
    assert "_model" not in textwrap.__dict__
    initializer.share(len)  # not a Python function at all
    initializer.share(object())


@pytest.mark.parametrize("name, raised", [("failing_init", "FileNotFoundError: m.bin"),
                                          ("exiting_init", "SystemExit: 3")])
def test_an_initializer_that_raises_gives_the_error_that_breaks_the_executor(
    main: dict[str, Any], name: str, raised: str
) -> None:
    error = Initializer(_travel(main[name]), ()).run("w7")
    assert isinstance(error, InitializerFailed)
    assert f"the initializer {name} raised {raised} (on worker w7)" in str(error)
    assert error.__cause__ is not None and error.__cause__.__traceback__ is not None


def test_an_initializer_that_cannot_be_pickled_says_so() -> None:
    with pytest.raises(InitializerFailed, match="initargs could not be pickled"):
        pickle_initializer(print, (threading.Lock(),), secret=SECRET)


# -- in a worker ---------------------------------------------------------------------------


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(f"initializer-test-{next(_names)}")


def _results(store: MemoryStore) -> dict[int, tuple[bool, Any]]:
    out = {}
    for key in store.list(_keys.RESULTS_PREFIX):
        for record in read_part(store, key).records:
            out[record.item_id] = payload.decode_result(record)
    return out


def _put_initializer(store: MemoryStore, fn: Any, args: tuple[Any, ...]) -> str:
    key, data = pickle_initializer(fn, args, secret=SECRET)
    store.put(key, data)
    return key


def test_a_worker_runs_the_initializer_once_and_its_calls_see_what_it_set(
    store: MemoryStore, main: dict[str, Any]
) -> None:
    key = _put_initializer(store, main["load_model"], ("m.bin", 3))
    put_batch(store, "b1", main["predict"], [(0, (1,)), (1, (2,))])
    put_batch(store, "b2", main["predict"], [(2, (3,))])
    assign(store, "w1", 0, "b1")
    assign(store, "w1", 1, "b2")
    assert Worker(store, "w1", secret=SECRET, idle_timeout=0.1, initializer=key).run() == 0
    assert _results(store) == {0: (True, ("loaded m.bin", 3, 1)),
                               1: (True, ("loaded m.bin", 6, 2)),
                               2: (True, ("loaded m.bin", 9, 3))}


def test_a_worker_whose_initializer_raises_fails_its_batch_with_the_reason_and_exits(
    store: MemoryStore, main: dict[str, Any]
) -> None:
    key = _put_initializer(store, main["failing_init"], ())
    put_batch(store, "b1", main["predict"], [(0, (1,)), (1, (2,))])
    assign(store, "w1", 0, "b1")
    assert Worker(store, "w1", secret=SECRET, idle_timeout=0.1, initializer=key).run() == 1
    ok, error = _results(store)[payload.WHOLE_BATCH]
    assert not ok and isinstance(error, InitializerFailed)
    assert "FileNotFoundError: m.bin" in str(error)
    assert "failing_init" in str(error.__cause__)  # the remote traceback


def test_a_worker_that_cannot_load_the_initializer_fails_its_batch(store: MemoryStore) -> None:
    key = _keys.initializer_key("x")
    store.put(key, payload.dump("initializer", b"\x80\x05garbage", key=key, secret=SECRET))
    put_batch(store, "b1", abs, [(0, (-1,))])
    assign(store, "w1", 0, "b1")
    assert Worker(store, "w1", secret=SECRET, idle_timeout=0.1,
                  initializer=_keys.initializer_key("x")).run() == 1
    ok, error = _results(store)[payload.WHOLE_BATCH]
    assert isinstance(error, InitializerFailed) and "could not be loaded on worker w1" in str(error)
