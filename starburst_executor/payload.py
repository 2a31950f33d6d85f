"""The wire format of everything the client and the workers exchange through the store.

Every object starts with a header that describes it, checked by the reader::

    b"SBX1" | 4-byte big-endian header length | JSON header | body

The header names the payload kind, the format version, the serializer and the versions of
Python and cloudpickle that wrote it.  cloudpickle output is only readable by the same Python
minor version and cloudpickle major version, so a reader refuses anything else with
:class:`PayloadVersionError`, whose message says what to rebuild.

Records, each a frozen dataclass with the code that writes and reads it:

* :class:`Batch` (kind ``batch``): the batch id, its functions' digests and its :class:`Call` s.
  On the wire a plain tuple ``(batch_id, [digest, ...], [(item_id, fn_index, args), ...])``
  pickled with the stdlib pickle, where ``args`` is the call's own cloudpickled
  ``(args, kwargs)``: each call is pickled once, on its own, so its size is known before the
  batch is cut and one call that cannot be read fails that call only.
* a *function* body: the cloudpickled callable, stored once per content hash.
* :class:`Assignment`: a worker's next order (run this batch's attempt, or stop), small JSON,
  so a worker reads it without unpickling anything.
* :class:`Claim`: who runs one attempt of a batch, or that the client revoked it (small JSON,
  created once with ``put_if_absent``: the worker claims it before it starts the batch).
* a *results* body: :class:`ResultPart`, whose values and exceptions are pickled one by one, so
  one result that cannot be unpickled fails one future, not a whole batch.  A record whose id
  is :data:`WHOLE_BATCH` stands for every call of its batch.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import pickle
import platform
import struct
import sys
import traceback
from typing import Any

import cloudpickle

from .errors import PayloadVersionError, RemoteError, RemoteTraceback, SerializationError

__all__ = [
    "FORMAT_VERSION",
    "WHOLE_BATCH",
    "Call",
    "Batch",
    "Assignment",
    "Claim",
    "ArgsPickler",
    "pickle_args",
    "dump",
    "load",
    "read_header",
    "ResultRecord",
    "ResultPart",
    "encode_value",
    "encode_exception",
    "decode_result",
    "function_digest",
]

MAGIC = b"SBX1"
FORMAT_VERSION = 1
_LEN = struct.Struct(">I")
PYTHON_MINOR = "%d.%d" % sys.version_info[:2]
CLOUDPICKLE_VERSION: str = cloudpickle.__version__
PROTOCOL = 5

# A result record with this id stands for every call of the batch: the batch as a whole failed
# (its payload could not be read), so the client fails all of its futures with that error.
WHOLE_BATCH = -1


def _header(kind: str) -> bytes:
    return json.dumps(
        {
            "format": FORMAT_VERSION,
            "kind": kind,
            "serializer": "cloudpickle",
            "python": PYTHON_MINOR,
            "python_full": platform.python_version(),
            "cloudpickle": CLOUDPICKLE_VERSION,
        },
        separators=(",", ":"),
    ).encode()


def dump(kind: str, body: bytes) -> bytes:
    """Frame an already pickled ``body`` with a header of ``kind``."""
    header = _header(kind)
    return b"".join((MAGIC, _LEN.pack(len(header)), header, body))


def _dump_plain(kind: str, obj: Any) -> bytes:
    """:func:`dump` of ``obj`` pickled with the stdlib pickle straight behind its header, so a
    large body is copied once, not once more to join it to the header."""
    header = _header(kind)
    buffer = io.BytesIO()
    buffer.write(b"".join((MAGIC, _LEN.pack(len(header)), header)))
    pickle.Pickler(buffer, PROTOCOL).dump(obj)
    return buffer.getvalue()


def read_header(data: bytes) -> tuple[dict[str, Any], memoryview]:
    """Return (header, body) of a framed payload; raise ``SerializationError`` if it is none."""
    view = memoryview(data)
    if bytes(view[:4]) != MAGIC or len(view) < 8:
        raise SerializationError(
            "not a starburst payload (bad magic): the object was written by something else "
            "or is truncated"
        )
    (length,) = _LEN.unpack(view[4:8])
    try:
        header = json.loads(bytes(view[8 : 8 + length]))
    except ValueError:
        raise SerializationError("corrupt starburst payload header") from None
    return header, view[8 + length :]


def check_header(header: dict[str, Any], kind: str) -> None:
    """Refuse a payload of another kind, format, Python minor or cloudpickle major version."""
    if header.get("format") != FORMAT_VERSION:
        raise PayloadVersionError(
            f"payload format {header.get('format')} is not {FORMAT_VERSION}: the client and the "
            "worker run different starburst-executor versions; rebuild the worker image "
            "(`starburst build`) from the client's environment"
        )
    if header.get("kind") != kind:
        raise SerializationError(f"expected a {kind} payload, got {header.get('kind')!r}")
    theirs_py = header.get("python")
    theirs_cp = str(header.get("cloudpickle", ""))
    if theirs_py != PYTHON_MINOR or theirs_cp.split(".")[0] != CLOUDPICKLE_VERSION.split(".")[0]:
        raise PayloadVersionError(
            f"this payload was written by Python {theirs_py} with cloudpickle {theirs_cp}, but "
            f"this process runs Python {PYTHON_MINOR} with cloudpickle {CLOUDPICKLE_VERSION}: "
            "pickled code only travels between the same Python minor version and cloudpickle "
            "major version. Rebuild the worker image from the client's environment "
            "(`starburst build`), or run the client with the worker's Python."
        )


def load(data: bytes, kind: str) -> Any:
    """Check the header of ``data`` and unpickle its body."""
    header, body = read_header(data)
    check_header(header, kind)
    return pickle.loads(body)


def function_digest(pickled: bytes) -> str:
    """The content hash under which a pickled function is stored."""
    return hashlib.sha256(pickled).hexdigest()


# -- results -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ResultRecord:
    """The outcome of one call, as it travels back.

    ``data`` is the pickled value (``ok``) or the pickled exception; ``error`` holds the
    exception's type name, message and formatted traceback as text, so the client can build a
    :class:`RemoteError` even when the exception itself cannot be unpickled.
    """

    item_id: int
    ok: bool
    data: bytes
    type_name: str = ""
    error: tuple[str, str, str] | None = None
    started: float = 0.0
    finished: float = 0.0


@dataclasses.dataclass(frozen=True)
class ResultPart:
    """Some results of one attempt of a batch, written by a worker as they finish."""

    batch_id: str
    attempt: int
    worker_id: str
    records: list[ResultRecord]
    final: bool = False


def _qualname(obj: Any) -> str:
    cls = type(obj)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _pickle_any(obj: Any) -> bytes:
    # The stdlib pickler is several times faster for plain data; cloudpickle is needed for
    # objects whose classes were themselves shipped by value (defined in __main__ and such).
    try:
        return pickle.dumps(obj, PROTOCOL)
    except Exception:
        return cloudpickle.dumps(obj, PROTOCOL)


def encode_value(item_id: int, value: Any, started: float, finished: float) -> ResultRecord:
    """Pickle a call's return value; one that cannot be pickled becomes a clear error."""
    try:
        data = _pickle_any(value)
    except Exception as exc:
        error = SerializationError(
            f"the result of call {item_id} (a {_qualname(value)}) could not be pickled to send "
            f"it back: {type(exc).__name__}: {exc}. Return plain data (numbers, strings, lists, "
            "dicts, arrays) or make the type picklable."
        )
        return encode_exception(item_id, error, started, finished, traceback_text="")
    return ResultRecord(item_id, True, data, _qualname(value), None, started, finished)


def encode_exception(
    item_id: int,
    exc: BaseException,
    started: float,
    finished: float,
    traceback_text: str | None = None,
) -> ResultRecord:
    """Pickle an exception raised by a call, with its traceback as text."""
    if traceback_text is None:
        traceback_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    type_name, message = _qualname(exc), str(exc)
    try:
        data = _pickle_any(exc.with_traceback(None))
        pickle.loads(data)  # an exception whose __reduce__ is wrong fails here, not on the client
    except Exception as pickling_error:
        stand_in = RemoteError(
            type_name,
            message,
            traceback_text,
            reason=f"it could not be pickled: {type(pickling_error).__name__}: {pickling_error}",
        )
        data = pickle.dumps(stand_in, PROTOCOL)
    return ResultRecord(
        item_id, False, data, type_name, (type_name, message, traceback_text), started, finished
    )


def decode_result(record: ResultRecord) -> tuple[bool, Any]:
    """Return (ok, value or exception) of a record, as the client should set it on the future.

    A remote exception keeps its type, args and message and gets the remote traceback as
    ``__cause__``.  What cannot be unpickled here becomes a clear error instead.
    """
    if record.ok:
        try:
            return True, pickle.loads(record.data)
        except Exception as exc:
            return False, SerializationError(
                f"the result of call {record.item_id} (a {record.type_name}) was computed but "
                f"could not be unpickled here: {type(exc).__name__}: {exc}. Is the module that "
                "defines it installed on the client?"
            )
    type_name, message, tb = record.error or (record.type_name, "", "")
    try:
        error = pickle.loads(record.data)
        if not isinstance(error, BaseException):
            raise TypeError(f"expected an exception, got {type(error).__name__}")
    except Exception as exc:
        error = RemoteError(
            type_name, message, tb,
            reason=f"it could not be unpickled here: {type(exc).__name__}: {exc}",
        )
    if tb:
        error.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return False, error


# -- client-side pickling -------------------------------------------------------------------

_modules_checked: set[str] = set()


@functools.lru_cache(maxsize=1)
def _system_prefixes() -> tuple[str, ...]:
    import site
    import sysconfig

    paths = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.update(site.getsitepackages())
    paths.add(site.getusersitepackages())
    real = {os.path.realpath(p) for p in paths if p}
    return tuple(p + os.sep for p in real | {p for p in paths if p})


def register_local_modules() -> None:
    """Make cloudpickle ship the user's own (not installed) modules by value.

    A worker has the client's installed packages (the image is built from them), but not the
    modules lying in the user's working directory: code from those must travel in the pickle.
    """
    new = [name for name in list(sys.modules) if "." not in name and name not in _modules_checked]
    if not new:
        return
    prefixes = _system_prefixes()
    for name in new:
        _modules_checked.add(name)
        module = sys.modules.get(name)
        if name in ("__main__", "starburst_executor") or module is None:
            continue
        file = getattr(module, "__file__", None)
        if not file:
            continue
        if file.startswith(prefixes) or os.sep + "site-packages" + os.sep in file:
            continue  # the common case, decided without touching the file system
        real = os.path.realpath(file)
        if real.startswith(prefixes) or os.sep + "site-packages" + os.sep in real:
            continue
        try:
            cloudpickle.register_pickle_by_value(module)
        except ValueError:
            pass


def pickle_function(fn: Any) -> bytes:
    """cloudpickle ``fn``; a failure names the function and the reason."""
    try:
        return cloudpickle.dumps(fn, PROTOCOL)
    except Exception as exc:
        raise SerializationError(
            f"the function {getattr(fn, '__qualname__', fn)!r} could not be pickled: "
            f"{type(exc).__name__}: {exc}. It may capture an open file, lock, connection or "
            "client: create such objects inside the function instead."
        ) from exc


class ArgsPickler:
    """cloudpickles calls' arguments one call at a time, each readable on its own.

    One pickler serves a whole batch: building a pickler costs more than pickling a few small
    arguments, and functions sharing globals share them as in one pickle.  Not thread-safe.
    """

    def __init__(self) -> None:
        self._renew()

    def _renew(self) -> None:
        # Also after a failure: a pickler stopped midway may hold a half-written frame.
        self._buffer = io.BytesIO()
        self._pickler = cloudpickle.CloudPickler(self._buffer, PROTOCOL)

    def dumps(self, item_id: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """Pickle one call's arguments; a failure names the argument that cannot travel."""
        self._buffer.seek(0)
        self._buffer.truncate()
        self._pickler.clear_memo()
        try:
            self._pickler.dump((args, kwargs))
        except Exception as exc:
            self._renew()
            raise _args_error(item_id, args, kwargs, exc) from exc
        return self._buffer.getvalue()


def pickle_args(item_id: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """cloudpickle one call's arguments (see :class:`ArgsPickler`)."""
    return ArgsPickler().dumps(item_id, args, kwargs)


def _args_error(
    item_id: int, args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception
) -> SerializationError:
    culprit = "its arguments"
    named = [(f"args[{i}]", a) for i, a in enumerate(args)]
    named += [(f"kwargs[{k!r}]", v) for k, v in kwargs.items()]
    for label, value in named:
        try:
            cloudpickle.dumps(value, PROTOCOL)
        except Exception:
            culprit = f"{label} (a {_qualname(value)})"
            break
    return SerializationError(
        f"call {item_id} could not be sent: {culprit} could not be pickled: "
        f"{type(exc).__name__}: {exc}. Pass data instead (a path or a URL instead of an open "
        "file, the settings instead of a client)."
    )


# -- the records that travel to workers ----------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One call as it travels: its id, the index of its function in the batch, its arguments.

    ``args`` is the cloudpickled ``(args, kwargs)`` (:class:`ArgsPickler`).
    """

    item_id: int
    fn_index: int
    args: bytes

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Unpickle ``(args, kwargs)`` (on the worker)."""
        args, kwargs = pickle.loads(self.args)
        return args, kwargs


@dataclasses.dataclass(frozen=True)
class Batch:
    """The calls of one batch and the digests of the functions they call."""

    batch_id: str
    digests: tuple[str, ...]
    calls: tuple[Call, ...]

    def encode(self) -> bytes:
        """The framed object stored under ``batches/<batch id>``."""
        calls = [(c.item_id, c.fn_index, c.args) for c in self.calls]
        return _dump_plain("batch", (self.batch_id, list(self.digests), calls))

    @classmethod
    def decode(cls, data: bytes) -> Batch:
        """Check the header of ``data`` and read the batch (call arguments stay pickled)."""
        batch_id, digests, calls = load(data, "batch")
        return cls(batch_id, tuple(digests), tuple(Call(i, f, a) for i, f, a in calls))


@dataclasses.dataclass(frozen=True)
class Assignment:
    """A worker's next order: run ``attempt`` of a batch without the calls in ``skip``, or stop.

    JSON on the wire (``{"batch": id, "attempt": n, "skip": [...]}`` or ``{"stop": true}``).
    """

    batch_id: str = ""
    attempt: int = 0
    skip: frozenset[int] = frozenset()
    stop: bool = False

    def encode(self) -> bytes:
        if self.stop:
            return b'{"stop": true}'
        return json.dumps({"batch": self.batch_id, "attempt": self.attempt,
                           "skip": sorted(self.skip)}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Assignment:
        order = json.loads(data)
        if order.get("stop"):
            return cls(stop=True)
        return cls(order["batch"], int(order["attempt"]), frozenset(order.get("skip", ())))


@dataclasses.dataclass(frozen=True)
class Claim:
    """The claim of one attempt of a batch: the worker that runs it, or ``revoked``.

    Whoever creates ``claims/<batch id>.<attempt>`` first wins: a worker starts an attempt
    only if it created the claim, and the client revokes a queued attempt by creating it first.
    It names no worker in its key, so any worker could claim a queued batch.
    """

    worker_id: str = ""
    revoked: bool = False
    at: float = 0.0

    def encode(self) -> bytes:
        if self.revoked:
            return json.dumps({"revoked": True, "at": self.at}).encode()
        return json.dumps({"worker": self.worker_id, "at": self.at}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Claim:
        doc = json.loads(data)
        return cls(doc.get("worker", ""), bool(doc.get("revoked")), float(doc.get("at", 0.0)))
