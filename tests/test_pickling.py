"""What cloudpickle alone cannot send: cached functions; and the hints of unpickling failures."""

from __future__ import annotations

import functools
import pickle
import sys
import types

from starburst_executor._pickling import dumps, explain_unpickling_error


def _module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(source, module.__dict__)
    return module


SOURCE = """
import functools

@functools.lru_cache(maxsize=8)
def basis(n):
    return n * 10

@functools.cache
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def use(x):
    return basis(x) + fib(x)
"""


def test_cached_functions_of_main_travel_by_value_with_an_empty_cache() -> None:
    main = _module("__main__", SOURCE)
    real_main = sys.modules["__main__"]
    sys.modules["__main__"] = main
    try:
        main.use(10)
        use_data, basis_data = dumps(main.use, 5), dumps(main.basis, 5)
    finally:
        sys.modules["__main__"] = real_main
    use, basis = pickle.loads(use_data), pickle.loads(basis_data)  # no such __main__ here
    assert use(10) == 100 + 55
    assert basis.cache_info().currsize == 0 and basis.cache_parameters()["maxsize"] == 8
    assert basis(3) == 30


def test_cached_functions_of_an_installed_module_stay_by_reference() -> None:
    installed = _module("installed_lib_for_test", SOURCE)
    sys.modules[installed.__name__] = installed
    try:
        assert pickle.loads(dumps(installed.basis, 5)) is installed.basis
        assert pickle.loads(dumps(installed.use, 5)) is installed.use
    finally:
        del sys.modules[installed.__name__]


def test_a_cached_function_not_found_by_its_name_travels_by_value() -> None:
    cached = functools.lru_cache(maxsize=None)(abs)
    assert pickle.loads(dumps(cached, 5))(-3) == 3


def test_hints_name_the_cause() -> None:
    missing = ModuleNotFoundError("No module named 'nope'", name="nope")
    assert "'nope' is not installed" in explain_unpickling_error(missing)
    gone = AttributeError("Can't get attribute 'basis' on <module '__main__' from 'x.py'>")
    hint = explain_unpickling_error(gone)
    assert "'basis' was sent by reference" in hint and "rebuild" not in hint
    old = AttributeError("Can't get attribute 'Thing' on <module 'somelib.core' from 'x.py'>")
    assert "different version" in explain_unpickling_error(old)
    assert "ValueError: odd" in explain_unpickling_error(ValueError("odd"))
