"""cloudpickle with what it lacks for notebook code, and what to say when unpickling fails.

cloudpickle sends a function from ``__main__`` or a local module by value, but a function
wrapped by ``functools.lru_cache`` or ``functools.cache`` is not a plain function: it is
pickled by reference to its name, which a worker cannot find (``Can't get attribute 'f' on
<module '__main__'>``).  :func:`dumps` sends such a wrapper by value when its function would
travel by value (the worker's cache starts empty), and by reference otherwise, as pickle does
for an installed package.
"""

from __future__ import annotations

import functools
import io
import re
import sys
from typing import Any

import cloudpickle

__all__ = ["Pickler", "dumps", "explain_unpickling_error"]

_LRU_WRAPPER = functools._lru_cache_wrapper


def _rebuild_lru_cache(fn: Any, maxsize: int | None, typed: bool) -> Any:
    return functools.lru_cache(maxsize=maxsize, typed=typed)(fn)


def _found_by_name(obj: Any) -> bool:
    """Whether pickling ``obj`` by reference would find this very object again."""
    found: Any = sys.modules.get(getattr(obj, "__module__", None) or "")
    for part in (getattr(obj, "__qualname__", None) or "<none>").split("."):
        found = getattr(found, part, None)
    return found is obj


def _travels_by_value(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    if module == "__main__" or not _found_by_name(obj):
        return True
    registered = cloudpickle.list_registry_pickle_by_value()
    return any(module == m or module.startswith(m + ".") for m in registered)


class Pickler(cloudpickle.CloudPickler):
    """A ``cloudpickle.CloudPickler`` that also sends ``lru_cache``/``cache`` wrappers by value."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _LRU_WRAPPER) and _travels_by_value(obj):
            parameters = obj.cache_parameters()
            return _rebuild_lru_cache, (obj.__wrapped__, parameters["maxsize"],
                                        parameters["typed"])
        return super().reducer_override(obj)


def dumps(obj: Any, protocol: int) -> bytes:
    """``cloudpickle.dumps`` that also sends ``lru_cache``/``cache`` wrappers by value."""
    buffer = io.BytesIO()
    Pickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


_MISSING_ATTRIBUTE = re.compile(r"Can't get attribute '([^']+)' on <module '([^']+)'")


def explain_unpickling_error(exc: BaseException) -> str:
    """What most likely went wrong when a worker could not unpickle what the client sent."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return (f"module {exc.name!r} is not installed in the worker: install it where the "
                "client runs and rebuild the worker image (`starburst build`); if it is your "
                "own module, import it in the client before submitting so that it travels "
                "by value")
    match = _MISSING_ATTRIBUTE.search(str(exc))
    if match:
        name, module = match.groups()
        if module in ("__main__", "starburst_executor.worker") or module.startswith("__"):
            return (f"{name!r} was sent by reference to the client's {module!r}, which the "
                    "worker does not have: an object that cloudpickle cannot send by value "
                    "(for example one made by a decorator that does not keep the function as "
                    "it is); define it in a module of your own or pass it as an argument")
        return (f"the worker's module {module!r} has no {name!r}: the worker image has a "
                "different version of it than the client; rebuild the image (`starburst build`)")
    return (f"{type(exc).__name__}: {exc}. If a module is missing, install it where the client "
            "runs and rebuild the worker image (`starburst build`)")
