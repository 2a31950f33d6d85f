"""Functions wrapped by ``functools.lru_cache``/``cache`` run remotely (by value, an empty cache
over there), and a batch the worker cannot unpickle fails with the likely cause named.
End to end on the local backend."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from starburst_executor import FargateExecutor
from starburst_executor.errors import SerializationError

T = 60


@pytest.fixture
def executor() -> Iterator[FargateExecutor]:
    with FargateExecutor(max_workers=1, backend="local") as ex:
        yield ex


def _module(directory: Path, source: str) -> Any:
    """Import ``source`` as a module file under ``directory`` (not installed)."""
    name = f"sbx_cached_{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(directory))


def test_cached_functions_of_main_run_remotely(executor: FargateExecutor) -> None:
    source = textwrap.dedent("""
        import functools

        @functools.lru_cache(maxsize=128)
        def basis(n):
            return [k * k for k in range(n)]

        @functools.cache
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        def uses_basis(n):
            return sum(basis(n)), basis.cache_info().misses
        """)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "<notebook-cell>", "exec"), namespace)
    namespace["basis"](5)  # a filled cache here; the worker's starts empty
    assert executor.submit(namespace["basis"], 4).result(timeout=T) == [0, 1, 4, 9]
    assert executor.submit(namespace["fib"], 60).result(timeout=T) == 1548008755920
    assert executor.submit(namespace["uses_basis"], 5).result(timeout=T) == (30, 1)
    assert list(executor.map(namespace["fib"], [10, 20])) == [55, 6765]


def test_cached_function_of_a_local_module_runs_remotely(executor: FargateExecutor,
                                                         tmp_path: Path) -> None:
    mod = _module(tmp_path, """
        import functools

        @functools.lru_cache(maxsize=None)
        def basis(n):
            return tuple(range(n))
        """)
    try:
        assert executor.submit(mod.basis, 3).result(timeout=T) == (0, 1, 2)
    finally:
        sys.modules.pop(mod.__name__, None)


def test_a_module_missing_on_the_worker_is_named(executor: FargateExecutor,
                                                 tmp_path: Path) -> None:
    # A module under site-packages counts as installed, so it travels by reference; the worker
    # (another process, without this directory on its path) cannot import it.
    mod = _module(tmp_path / "site-packages", """
        def double(x):
            return 2 * x
        """)
    try:
        error = executor.submit(mod.double, 3).exception(timeout=T)
    finally:
        sys.modules.pop(mod.__name__, None)
    assert isinstance(error, SerializationError)
    message = str(error)
    assert "could not be unpickled on worker" in message
    assert f"module {mod.__name__!r} is not installed in the worker" in message
    assert "ModuleNotFoundError" in message
