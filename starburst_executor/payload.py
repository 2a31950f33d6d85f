"""The wire format of everything the client and the workers exchange through the store.

Every object is framed, authenticated and checked as ``_frame`` says.

Records, each a dataclass with the code that writes and reads it:

* :class:`Batch` (kind ``batch``): the batch id, its functions' digests and its :class:`Call` s.
  On the wire a plain tuple ``(batch_id, [digest, ...], item ids, function indexes, sizes,
  args, plain)`` packed by ``_chunks.pack``: the numbers as packed little-endian columns,
  ``args`` every call's own cloudpickled ``(args, kwargs)`` one after the other, out of band.
  Each call is pickled once, on its own, so its size is known before the batch is cut and one
  call that cannot be read fails that call only; but calls whose arguments are only numbers,
  ``None`` and short strings (size -1) travel in the one list ``plain``: nothing of theirs can
  fail to unpickle.
* a *function* body: the cloudpickled callable, stored once per content hash.
* :class:`Assignment`: a worker's next order (run this batch's attempt, or stop), a small JSON
  body, so a worker reads it without unpickling anything (framed and authenticated too).
* a *claim* (``_keys.Claim``): plain JSON, who runs one attempt of a batch or that the client
  revoked it; only its existence counts (``put_if_absent``), its body is never trusted.
* a *results* body: :class:`ResultPart` (``_results``), the results of some calls of a batch.

Large values are never joined or copied on the way (``_chunks``): a pickle is a list of buffers
that holds a large ``bytes`` by reference, framed and stored as such, and read back as
memoryviews into the object read, so a value costs about twice its size on either side.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import struct
from typing import Any


from . import _chunks, _pickling
from ._frame import (
    CLOUDPICKLE_VERSION,
    FORMAT_VERSION,
    MAGIC,
    PROTOCOL,
    PYTHON_MINOR,
    dump,
    dump_chunks,
    load,
    open_frame,
    read_header,
)
from ._pickling import register_local_modules
from ._results import (
    WHOLE_BATCH,
    ResultPart,
    ResultRecord,
    decode_result,
    encode_exception,
    encode_value,
    is_small_atom,
    numbers,
    qualname,
)
from .errors import ArgumentsTooLarge, SerializationError

__all__ = [
    "FORMAT_VERSION",
    "WHOLE_BATCH",
    "Call",
    "Batch",
    "Assignment",
    "ArgsPickler",
    "PlainArgs",
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

def function_digest(pickled: bytes) -> str:
    """The content hash under which a pickled function is stored."""
    return hashlib.sha256(pickled).hexdigest()


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
              ) -> bytes | _chunks.Chunks | PlainArgs:
        """Pickle one call's arguments; a failure names the argument that cannot travel.

        Arguments that are all numbers, ``None`` or short strings are not pickled here: they
        travel as :class:`PlainArgs`, in one list with the batch's others.
        """
        if not kwargs:  # the common quick call
            size = 16
            for arg in args:
                if not is_small_atom(arg):
                    break
                size += 4 * len(arg) + 9 if type(arg) is str else \
                    len(arg) + 9 if type(arg) is bytes else 9
            else:
                if self._limit is None or size <= self._limit:
                    return PlainArgs(args, size)
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


class PlainArgs:
    """A call's positional arguments that need no pickle of their own: numbers, ``None`` and
    short strings or bytes, which cannot fail to unpickle.  ``len()`` is at least their pickled
    size (what cuts batches and enforces ``max_result_size``)."""

    __slots__ = ("args", "size")

    def __init__(self, args: tuple[Any, ...], size: int) -> None:
        self.args, self.size = args, size

    def __len__(self) -> int:
        return self.size


def pickle_args(item_id: int, args: tuple[Any, ...], kwargs: dict[str, Any],
                limit: int | None = None) -> bytes | _chunks.Chunks | PlainArgs:
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
            culprit = f"{label} (a {qualname(value)})"
            break
    return SerializationError(
        f"call {item_id} could not be sent: {culprit} could not be pickled: "
        f"{type(exc).__name__}: {exc}. Pass data instead (a path or a URL instead of an open "
        "file, the settings instead of a client)."
    )


# -- the records that travel to workers ----------------------------------------------------


@dataclasses.dataclass(slots=True)
class Call:
    """One call as it travels: its id, the index of its function in the batch, its arguments.

    ``args`` is the cloudpickled ``(args, kwargs)`` (:class:`ArgsPickler`): chunks when
    written, a memoryview into the batch's object once read; or the positional arguments
    themselves when they are plain (:class:`PlainArgs` when written, a tuple once read).
    """

    item_id: int
    fn_index: int
    args: bytes | memoryview | _chunks.Chunks | PlainArgs | tuple[Any, ...]

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Unpickle ``(args, kwargs)`` (on the worker)."""
        if isinstance(self.args, tuple):
            return self.args, {}
        if isinstance(self.args, PlainArgs):
            return self.args.args, {}
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
        arguments out of band, one after the other, never joined."""
        calls = self.calls
        return Batch.encode_columns(self.batch_id, self.digests, [c.item_id for c in calls],
                                    [c.fn_index for c in calls], [c.args for c in calls],
                                    key=key, secret=secret)

    @staticmethod
    def encode_columns(batch_id: str, digests: tuple[str, ...], item_ids: list[int],
                       fn_indexes: list[int], args: list[Any], *, key: str,
                       secret: bytes) -> _chunks.Chunks:
        """:meth:`encode` of a batch given as columns, without a :class:`Call` per call.

        ``args``: each call's pickle (bytes, chunks) or :class:`PlainArgs` (or the tuple it
        becomes when read); a plain call's size is written as -1 and its arguments go into one
        list, pickled with the columns.
        """
        n = len(item_ids)
        plain = [a.args if type(a) is PlainArgs else a for a in args
                 if type(a) is PlainArgs or type(a) is tuple]  # a tuple: as read by decode()
        if plain:
            values, pickled_sizes = _chunks.concat(
                [a for a in args if type(a) is not PlainArgs and type(a) is not tuple])
            sized = iter(pickled_sizes).__next__
            sizes = [-1 if type(a) is PlainArgs or type(a) is tuple else sized() for a in args]
        else:
            values, sizes = _chunks.concat(args)
        columns = (batch_id, list(digests), struct.pack(f"<{n}q", *item_ids),
                   struct.pack(f"<{n}q", *fn_indexes), struct.pack(f"<{n}q", *sizes), values,
                   plain)
        return dump_chunks("batch", _chunks.pack(columns), key=key, secret=secret)

    @classmethod
    def decode(cls, data: bytes, *, key: str, secret: bytes) -> Batch:
        """Check ``data`` read from ``key`` and read the batch (call arguments stay pickled,
        as memoryviews into ``data``)."""
        body = open_frame(data, "batch", key=key, secret=secret)
        batch_id, digests, ids, fns, sizes, args, plain = _chunks.unpack(body)
        n = len(ids) // 8
        ids, fns, sizes = numbers("q", ids, n), numbers("q", fns, n), numbers("q", sizes, n)
        if sum(s for s in sizes if s > 0) != len(args) or sizes.count(-1) != len(plain) or \
                any(s < -1 for s in sizes) or any(not 0 <= f < len(digests) for f in fns):
            raise pickle.UnpicklingError("batch columns do not match")
        calls, offset, next_plain = [], 0, iter(plain).__next__
        for item_id, fn_index, size in zip(ids, fns, sizes):
            if size == -1:
                calls.append(Call(item_id, fn_index, tuple(next_plain())))
                continue
            calls.append(Call(item_id, fn_index, args[offset:offset + size]))
            offset += size
        return cls(batch_id, tuple(digests), tuple(calls))


@dataclasses.dataclass(frozen=True)
class Assignment:
    """A worker's next order: run ``attempt`` of a batch without the calls in ``skip``, or stop.

    A JSON body on the wire (``{"batch": id, "attempt": n, "skip": [...], "expected": s,
    "function": size}`` or ``{"stop": true}``), framed and authenticated like every other
    object; then a newline, ``function`` and ``batch``.  ``batch``: for a small batch sent
    inline, its object as stored under ``batches/<id>``.  ``function``: for a small function
    the worker was not sent yet, the object stored under ``functions/<digest>`` of the
    batch's function (a round trip saved at its first batch).  ``expected``: the seconds the
    client expects the batch to run (0: not known yet).
    """

    batch_id: str = ""
    attempt: int = 0
    skip: frozenset[int] = frozenset()
    stop: bool = False
    batch: bytes = b""
    expected: float = 0.0
    function: bytes = b""

    def encode(self, *, key: str, secret: bytes) -> bytes:
        if self.stop:
            body = b'{"stop": true}'
        else:
            order: dict[str, Any] = {"batch": self.batch_id, "attempt": self.attempt,
                                     "skip": sorted(self.skip)}
            if self.expected > 0:
                order["expected"] = round(self.expected, 3)
            if self.function:
                order["function"] = len(self.function)
            body = json.dumps(order).encode()
            if self.batch or self.function:  # JSON has no \n
                body = b"".join((body, b"\n", self.function, self.batch))
        return dump("assign", body, key=key, secret=secret)

    @classmethod
    def decode(cls, data: bytes, *, key: str, secret: bytes) -> Assignment:
        head, _, inline = bytes(open_frame(data, "assign", key=key, secret=secret)).partition(
            b"\n")
        order = json.loads(head)
        if order.get("stop"):
            return cls(stop=True)
        split = int(order.get("function", 0))
        return cls(order["batch"], int(order["attempt"]), frozenset(order.get("skip", ())),
                   batch=inline[split:], expected=max(0.0, float(order.get("expected", 0.0))),
                   function=inline[:split])

