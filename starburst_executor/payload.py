"""The wire format of everything the client and the workers exchange through the store.

Every object starts with a header that describes it and ends with its MAC, both checked by
the reader before it unpickles anything::

    b"SBX1" | 4-byte big-endian header length | JSON header | body | HMAC-SHA256 (32 bytes)

The MAC (``_auth.sign``) covers everything before it and the object's key, under the session's
secret, which never touches the store: an object that was not written under its key by this
session is refused with :class:`IntegrityError` (format 2; format 1 had no MAC).

The header names the payload kind, the format version, the serializer and the versions of
Python and cloudpickle that wrote it.  cloudpickle output is only readable by the same Python
minor version and cloudpickle major version, so a reader refuses anything else with
:class:`PayloadVersionError`, whose message says what to rebuild.

Records, each a frozen dataclass with the code that writes and reads it:

* :class:`Batch` (kind ``batch``): the batch id, its functions' digests and its :class:`Call` s.
  On the wire a plain tuple ``(batch_id, [digest, ...], [(item_id, fn_index, args), ...])``
  packed by ``_chunks.pack``, where ``args`` is the call's own cloudpickled
  ``(args, kwargs)``, out of band: each call is pickled once, on its own, so its size is known
  before the batch is cut and one call that cannot be read fails that call only.
* a *function* body: the cloudpickled callable, stored once per content hash.
* :class:`Assignment`: a worker's next order (run this batch's attempt, or stop), a small JSON
  body, so a worker reads it without unpickling anything (framed and authenticated too).
* a *claim* (``_keys.Claim``): plain JSON, who runs one attempt of a batch or that the client
  revoked it; only its existence counts (``put_if_absent``), its body is never trusted.
* a *results* body: :class:`ResultPart`, whose values and exceptions are pickled one by one, so
  one result that cannot be unpickled fails one future, not a whole batch.  A record whose id
  is :data:`WHOLE_BATCH` stands for every call of its batch.

Large values are never joined or copied on the way (``_chunks``): a pickle is a list of buffers
that holds a large ``bytes`` by reference, framed and stored as such, and read back as
memoryviews into the object read, so a value costs about twice its size on either side.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import platform
import struct
import sys
import traceback
from typing import Any

import cloudpickle

from . import _auth, _chunks, _pickling
from ._pickling import register_local_modules
from .errors import (
    ArgumentsTooLarge,
    IntegrityError,
    PayloadVersionError,
    RemoteError,
    RemoteTraceback,
    ResultTooLarge,
    SerializationError,
)

__all__ = [
    "FORMAT_VERSION",
    "WHOLE_BATCH",
    "Call",
    "Batch",
    "Assignment",
    "ArgsPickler",
    "pickle_args",
    "dump",
    "dump_chunks",
    "load",
    "open_frame",
    "read_header",
    "ResultRecord",
    "ResultPart",
    "encode_value",
    "encode_exception",
    "decode_result",
    "function_digest",
]

MAGIC = b"SBX1"
FORMAT_VERSION = 3  # 2: frames end with an HMAC, result records carry the call's output;
# 3: batches and results are packed (_chunks), their large values out of band
_LEN = struct.Struct(">I")
PYTHON_MINOR = "%d.%d" % sys.version_info[:2]
CLOUDPICKLE_VERSION: str = cloudpickle.__version__
PROTOCOL = 5

# Kinds whose body is JSON, not a pickle.
_JSON_KINDS = frozenset({"assign", "session"})

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


def dump(kind: str, body: bytes, *, key: str, secret: bytes) -> bytes:
    """Frame an already pickled ``body`` with a header of ``kind`` and its MAC for ``key``."""
    header = _header(kind)
    prefix = b"".join((MAGIC, _LEN.pack(len(header)), header))
    return b"".join((prefix, body, _auth.sign(secret, key, (prefix, body))))


def dump_chunks(kind: str, body: _chunks.Chunks, *, key: str, secret: bytes) -> _chunks.Chunks:
    """:func:`dump` of a body held as chunks, which stay apart: a large body is not copied."""
    header = _header(kind)
    parts = [b"".join((MAGIC, _LEN.pack(len(header)), header)), *body.parts]
    return _chunks.Chunks([*parts, _auth.sign(secret, key, parts)])


def read_header(data: bytes | memoryview) -> tuple[dict[str, Any], memoryview]:
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
    if kind in _JSON_KINDS:
        return  # nothing pickled: any Python reads it (a worker then refuses the batch itself)
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


def open_frame(data: bytes, kind: str, *, key: str, secret: bytes) -> memoryview:
    """Check the MAC and the header of ``data``, read from ``key``; return its body.

    Raises:
        IntegrityError: the object was not written under ``key`` by this session.
        PayloadVersionError: it was written by another version (told apart by its header).
    """
    try:
        covered = _auth.verify(secret, key, data)
    except IntegrityError:
        try:
            header, _ = read_header(data)
        except SerializationError:
            header = {}
        if isinstance(header, dict) and header.get("format") not in (None, FORMAT_VERSION):
            check_header(header, kind)  # another version wrote it: say which, not "tampered"
        raise
    header, body = read_header(covered)
    check_header(header, kind)
    return body


def load(data: bytes, kind: str, *, key: str, secret: bytes) -> Any:
    """Check the MAC and the header of ``data``, read from ``key``, and unpickle its body."""
    return pickle.loads(open_frame(data, kind, key=key, secret=secret))


def function_digest(pickled: bytes) -> str:
    """The content hash under which a pickled function is stored."""
    return hashlib.sha256(pickled).hexdigest()


# -- results -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ResultRecord:
    """The outcome of one call, as it travels back.

    ``data`` is the pickled value (``ok``) or the pickled exception; ``error`` holds the
    exception's type name, message and formatted traceback as text, so the client can build a
    :class:`RemoteError` even when the exception itself cannot be unpickled.  ``output`` is what
    the call printed and logged (``_output.Output``), empty when the client did not ask for it.
    """

    item_id: int
    ok: bool
    data: bytes | memoryview | _chunks.Chunks  # a memoryview once read, Chunks when written
    type_name: str = ""
    error: tuple[str, str, str] | None = None
    started: float = 0.0
    finished: float = 0.0
    output: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class ResultPart:
    """Some results of one attempt of a batch, written by a worker as they finish."""

    batch_id: str
    attempt: int
    worker_id: str
    records: list[ResultRecord]
    final: bool = False

    def encode(self, *, key: str, secret: bytes) -> _chunks.Chunks:
        """The framed object stored under ``key``: values out of band, never joined."""
        return dump_chunks("results", _chunks.pack(self), key=key, secret=secret)

    @classmethod
    def decode(cls, data: bytes, *, key: str, secret: bytes) -> Any:
        """Check ``data`` read from ``key`` and read it (values stay views into ``data``)."""
        return _chunks.unpack(open_frame(data, "results", key=key, secret=secret))


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
        return _pickling.dumps(obj, PROTOCOL)


def encode_value(item_id: int, value: Any, started: float, finished: float,
                 limit: int | None = None) -> ResultRecord:
    """Pickle a call's return value; one that cannot be pickled or passes ``limit`` bytes
    (``max_result_size``) becomes a clear error."""
    try:
        try:
            data = _chunks.dumps(value, pickle.Pickler, limit=limit)  # see _pickle_any
        except _chunks.TooLarge:
            raise
        except Exception:
            data = _chunks.dumps(value, _pickling.Pickler, limit=limit)
    except _chunks.TooLarge:
        too_large = ResultTooLarge(
            f"the result of call {item_id} (a {_qualname(value)}) is larger than "
            f"max_result_size={limit} bytes once pickled, so it was not sent back (the call is "
            "not retried). Return a smaller result, write large outputs to S3 yourself and "
            "return where they are, or raise max_result_size (STARBURST_MAX_RESULT_SIZE) if "
            "the client and the workers have memory for twice that size.")
        return encode_exception(item_id, too_large, started, finished, traceback_text="")
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
            return True, pickle.loads(_chunks.joined(record.data))
        except Exception as exc:
            return False, SerializationError(
                f"the result of call {record.item_id} (a {record.type_name}) was computed but "
                f"could not be unpickled here: {type(exc).__name__}: {exc}. Is the module that "
                "defines it installed on the client?"
            )
    type_name, message, tb = record.error or (record.type_name, "", "")
    try:
        error = pickle.loads(_chunks.joined(record.data))
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

def pickle_function(fn: Any) -> bytes:
    """cloudpickle ``fn``; a failure names the function and the reason."""
    try:
        return _pickling.dumps(fn, PROTOCOL)
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

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit  # max_result_size: arguments larger than this are refused
        self._renew()

    def _renew(self) -> None:
        # Also after a failure: a pickler stopped midway may hold a half-written frame.
        self._buffer = _chunks.Collector(self._limit)  # a large bytes is kept, not copied
        self._pickler = _pickling.Pickler(self._buffer, PROTOCOL)

    def dumps(self, item_id: int, args: tuple[Any, ...], kwargs: dict[str, Any]
              ) -> _chunks.Chunks:
        """Pickle one call's arguments; a failure names the argument that cannot travel."""
        self._buffer.reset()
        self._pickler.clear_memo()
        try:
            self._pickler.dump((args, kwargs))
        except _chunks.TooLarge:
            self._renew()
            raise ArgumentsTooLarge(
                f"call {item_id} was not sent: its arguments are larger than "
                f"max_result_size={self._limit} bytes once pickled. Pass where the data is "
                "instead (an S3 URL, a path the workers can read), or raise max_result_size "
                "(STARBURST_MAX_RESULT_SIZE) if the client and the workers have memory for "
                "twice that size.") from None
        except Exception as exc:
            self._renew()
            raise _args_error(item_id, args, kwargs, exc) from exc
        return self._buffer.chunks()


def pickle_args(item_id: int, args: tuple[Any, ...], kwargs: dict[str, Any],
                limit: int | None = None) -> _chunks.Chunks:
    """cloudpickle one call's arguments (see :class:`ArgsPickler`)."""
    return ArgsPickler(limit).dumps(item_id, args, kwargs)


def _args_error(
    item_id: int, args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception
) -> SerializationError:
    culprit = "its arguments"
    named = [(f"args[{i}]", a) for i, a in enumerate(args)]
    named += [(f"kwargs[{k!r}]", v) for k, v in kwargs.items()]
    for label, value in named:
        try:
            _pickling.dumps(value, PROTOCOL)
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

    ``args`` is the cloudpickled ``(args, kwargs)`` (:class:`ArgsPickler`): chunks when
    written, a memoryview into the batch's object once read.
    """

    item_id: int
    fn_index: int
    args: bytes | memoryview | _chunks.Chunks

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Unpickle ``(args, kwargs)`` (on the worker)."""
        args, kwargs = pickle.loads(_chunks.joined(self.args))
        return args, kwargs


@dataclasses.dataclass(frozen=True)
class Batch:
    """The calls of one batch and the digests of the functions they call."""

    batch_id: str
    digests: tuple[str, ...]
    calls: tuple[Call, ...]

    def encode(self, *, key: str, secret: bytes) -> _chunks.Chunks:
        """The framed object stored under ``key`` (``batches/<batch id>``); the calls'
        arguments out of band, never joined."""
        calls = [(c.item_id, c.fn_index, c.args if isinstance(c.args, _chunks.Chunks)
                  else _chunks.Chunks([c.args])) for c in self.calls]
        body = _chunks.pack((self.batch_id, list(self.digests), calls))
        return dump_chunks("batch", body, key=key, secret=secret)

    @classmethod
    def decode(cls, data: bytes, *, key: str, secret: bytes) -> Batch:
        """Check ``data`` read from ``key`` and read the batch (call arguments stay pickled,
        as memoryviews into ``data``)."""
        body = open_frame(data, "batch", key=key, secret=secret)
        batch_id, digests, calls = _chunks.unpack(body)
        return cls(batch_id, tuple(digests), tuple(Call(i, f, a) for i, f, a in calls))


@dataclasses.dataclass(frozen=True)
class Assignment:
    """A worker's next order: run ``attempt`` of a batch without the calls in ``skip``, or stop.

    A JSON body on the wire (``{"batch": id, "attempt": n, "skip": [...]}`` or
    ``{"stop": true}``), framed and authenticated like every other object; then, for a small
    batch sent inline, a newline and ``batch``: its object as stored under ``batches/<id>``.
    """

    batch_id: str = ""
    attempt: int = 0
    skip: frozenset[int] = frozenset()
    stop: bool = False
    batch: bytes = b""

    def encode(self, *, key: str, secret: bytes) -> bytes:
        if self.stop:
            body = b'{"stop": true}'
        else:
            body = json.dumps({"batch": self.batch_id, "attempt": self.attempt,
                               "skip": sorted(self.skip)}).encode()
            body = b"\n".join((body, self.batch)) if self.batch else body  # JSON has no \n
        return dump("assign", body, key=key, secret=secret)

    @classmethod
    def decode(cls, data: bytes, *, key: str, secret: bytes) -> Assignment:
        head, _, inline = bytes(open_frame(data, "assign", key=key, secret=secret)).partition(
            b"\n")
        order = json.loads(head)
        if order.get("stop"):
            return cls(stop=True)
        return cls(order["batch"], int(order["attempt"]), frozenset(order.get("skip", ())),
                   batch=inline)

