"""The workers' ``initializer(*initargs)``: pickled once by the client, run once by each worker
before its first call, and the globals it sets seen by the calls.

::

    client  pickle_initializer(fn, args) --> initializer/<sha256> (its key in STARBURST_INITIALIZER)
    worker  Initializer.load --> run() before the first assignment --> share(fn) on every
            function the worker loads afterwards

Why ``share``: cloudpickle gives each separately pickled function from ``__main__`` (or from a
module shipped by value) its own copy of the module's globals.  An ``init()`` that sets
``global _model`` would change only its own copy, unseen by a ``predict()`` pickled on its own.
So the worker notes which globals the initializer added or rebound and copies them into the
globals of every function it loads from the same module.  Functions of an importable module
share that module's real globals already and are left alone.  What ``share`` cannot see: a
global the initializer mutates in place (``_cache.update(...)``) rather than assigns.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

from . import _keys, _pickling, payload
from .errors import InitializerFailed

__all__ = ["pickle_initializer", "Initializer"]


def pickle_initializer(fn: Callable[..., Any], args: tuple[Any, ...], *,
                       secret: bytes) -> tuple[str, bytes]:
    """(store key, framed and signed object) of ``(fn, args)``, pickled by value like a call's
    function.

    Raises:
        InitializerFailed: it cannot be pickled (the message says why).
    """
    payload.register_local_modules()
    try:
        body = _pickling.dumps((fn, tuple(args)), payload.PROTOCOL)
    except Exception as exc:
        raise InitializerFailed(
            f"the initializer {_name(fn)} or its initargs could not be pickled to send them to "
            f"the workers: {type(exc).__name__}: {exc}. They may hold an open file, lock or "
            "client: create such objects inside the initializer instead.") from exc
    key = _keys.initializer_key(payload.function_digest(body))
    return key, payload.dump("initializer", body, key=key, secret=secret)


class Initializer:
    """A worker's initializer: :meth:`run` it once, then :meth:`share` what it set."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self._home: dict[str, Any] | None = None
        self._module: str | None = None
        self._set: dict[str, Any] = {}

    @classmethod
    def load(cls, data: bytes, *, key: str, secret: bytes) -> Initializer:
        """The initializer in the framed ``initializer`` object stored at ``key``."""
        fn, args = payload.load(data, "initializer", key=key, secret=secret)
        return cls(fn, tuple(args))

    def run(self, worker_id: str) -> InitializerFailed | None:
        """Run it; return the error that breaks the executor if it raised (anything, as
        ``ProcessPoolExecutor`` catches), with the exception as ``__cause__``."""
        function = _function_of(self.fn)
        home = function.__globals__ if function is not None else None
        before = dict(home) if home is not None else {}
        try:
            self.fn(*self.args)
        except BaseException as exc:  # noqa: B036 - SystemExit in it breaks the pool too
            error = InitializerFailed(
                f"the initializer {_name(self.fn)} raised {type(exc).__name__}: {exc} (on worker "
                f"{worker_id}); the executor takes no more work, as ProcessPoolExecutor after a "
                "failed initializer. Fix the initializer and start a new executor.")
            error.__cause__ = exc
            return error
        if function is not None and home is not None:
            self._home, self._module = home, function.__module__
            self._set = {name: value for name, value in home.items()
                         if name not in before or before[name] is not value}
        return None

    def share(self, obj: Any) -> None:
        """Give ``obj`` (a function loaded by the worker) the globals the initializer set, if
        it comes from the initializer's module but has globals of its own."""
        if not self._set:
            return
        function = _function_of(obj)
        if function is None or function.__module__ != self._module:
            return
        if function.__globals__ is not self._home:
            function.__globals__.update(self._set)


def _function_of(obj: Any) -> types.FunctionType | None:
    """The Python function behind a callable: itself, a partial's, a method's, or the
    ``__call__`` of a callable object's class."""
    for _ in range(8):  # partials of methods of partials...: a few levels, never a cycle
        if isinstance(obj, types.FunctionType):
            return obj
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif isinstance(obj, types.MethodType):
            obj = obj.__func__
        elif not isinstance(obj, type) and isinstance(getattr(type(obj), "__call__", None),
                                                      types.FunctionType):
            obj = type(obj).__call__
        else:
            return None
    return None


def _name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))
