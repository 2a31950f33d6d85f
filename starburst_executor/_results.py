"""The wire format of results: what a worker sends back for its calls, and how.

:class:`ResultPart` holds some results of one attempt of a batch, written by a worker as they
finish.  Values and exceptions are pickled one by one, so one result that cannot be unpickled
fails one future, not a whole batch; on the wire the records are columns
(:meth:`ResultPart.encode`), and results that are small numbers or strings travel together in
one list, unpickled at once (they cannot fail).  A record whose id is :data:`WHOLE_BATCH`
stands for every call of its batch.  Framing is ``_frame``'s.
"""

from __future__ import annotations

import dataclasses
import pickle
import struct
import threading
import traceback
from typing import Any

from . import _chunks, _pickling
from ._frame import PROTOCOL, dump_chunks, open_frame
from .errors import RemoteError, RemoteTraceback, ResultTooLarge, SerializationError

__all__ = ["WHOLE_BATCH", "ResultRecord", "ResultPart", "encode_value", "encode_exception",
           "decode_result", "is_small_atom", "numbers", "qualname"]

# A result record with this id stands for every call of the batch: the batch as a whole failed
# (its payload could not be read), so the client fails all of its futures with that error.
WHOLE_BATCH = -1



@dataclasses.dataclass(slots=True)
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
    atom: bool = False  # ``value`` is the result itself, a small number or string: no pickle
    value: Any = None


@dataclasses.dataclass(frozen=True)
class ResultPart:
    """Some results of one attempt of a batch, written by a worker as they finish."""

    batch_id: str
    attempt: int
    worker_id: str
    records: list[ResultRecord]
    final: bool = False

    def encode(self, *, key: str, secret: bytes) -> _chunks.Chunks:
        """The framed object stored under ``key``: values out of band, never joined.

        On the wire the records are columns (ids, flags, times and sizes as packed numbers,
        every value in one out-of-band run), so a part of thousands of small results costs a
        few objects to pickle, not thousands of records.
        """
        records = self.records
        n = len(records)
        times: list[float] = []
        for r in records:
            times.append(r.started)
            times.append(r.finished)
        values, sizes = _chunks.concat([r.data for r in records])
        columns = (
            self.batch_id, self.attempt, self.worker_id, self.final,
            struct.pack(f"<{n}q", *[r.item_id for r in records]),
            bytes([2 if r.atom else r.ok for r in records]),
            [r.value for r in records if r.atom],
            struct.pack(f"<{2 * n}d", *times),
            [r.type_name for r in records],
            {i: r.error for i, r in enumerate(records) if r.error is not None},
            {i: r.output for i, r in enumerate(records) if r.output},
            struct.pack(f"<{n}q", *sizes),
            values,
        )
        return dump_chunks("results", _chunks.pack(columns), key=key, secret=secret)

    @classmethod
    def decode(cls, data: bytes, *, key: str, secret: bytes) -> ResultPart:
        """Check ``data`` read from ``key`` and read it (values stay views into ``data``)."""
        columns = _chunks.unpack(open_frame(data, "results", key=key, secret=secret))
        (batch_id, attempt, worker_id, final, ids, oks, atoms, times, types, errors, outputs,
         sizes, values) = columns
        n = len(oks)
        ids, times, sizes = numbers("q", ids, n), numbers("d", times, 2 * n), \
            numbers("q", sizes, n)
        if len(types) != n or sum(sizes) != len(values) or oks.count(2) != len(atoms):
            raise pickle.UnpicklingError("result columns do not match")
        records: list[ResultRecord] = []
        offset, next_atom = 0, iter(atoms).__next__
        append, record = records.append, ResultRecord
        for i in range(n):
            output = outputs.get(i, ()) if outputs else ()
            if oks[i] == 2:
                append(record(ids[i], True, b"", types[i], None, times[2 * i],
                              times[2 * i + 1], output, True, next_atom()))
                continue
            size = sizes[i]
            append(record(ids[i], oks[i] == 1, values[offset:offset + size], types[i],
                          errors.get(i), times[2 * i], times[2 * i + 1], output))
            offset += size
        return cls(batch_id, attempt, worker_id, records, final)


def numbers(code: str, data: bytes, count: int) -> tuple[Any, ...]:
    """``count`` little-endian numbers of struct type ``code`` packed in ``data``."""
    if len(data) != count * struct.calcsize(code):
        raise pickle.UnpicklingError("a packed column has the wrong length")
    return struct.unpack(f"<{count}{code}", data)


def qualname(obj: Any) -> str:
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


_ATOMS = frozenset({float, bool, complex, type(None)})
_SMALL = 1 << 16  # a str or bytes this long pickles in one piece without a second thought


def is_small_atom(value: Any) -> bool:
    """Whether the stdlib pickler writes ``value`` exactly as cloudpickle would, in a few
    bytes: an ``int`` of at most 64 bits, another number, ``None`` or a short ``str``/``bytes``
    (immutable, so it may be pickled later than it was made)."""
    kind = type(value)
    if kind is int:
        return bool(value.bit_length() <= 64)
    return kind in _ATOMS or ((kind is str or kind is bytes) and len(value) < _SMALL)


class _ValuePickler:
    """Pickles return values with picklers kept for the thread: building a pickler costs more
    than pickling a small value.  The stdlib pickler first (see :func:`_pickle_any`)."""

    _local = threading.local()

    def __init__(self) -> None:
        self._renew()

    @classmethod
    def current(cls) -> _ValuePickler:
        pickler: _ValuePickler | None = getattr(cls._local, "pickler", None)
        if pickler is None:
            pickler = cls._local.pickler = cls()
        return pickler

    def _renew(self) -> None:
        # Also after a failure: a pickler stopped midway may hold a half-written frame.
        self._out = _chunks.Collector()
        self._plain = pickle.Pickler(self._out, PROTOCOL)
        self._cloud = _pickling.Pickler(self._out, PROTOCOL)

    def dumps(self, value: Any, limit: int | None) -> _chunks.Chunks:
        """Pickle ``value`` into chunks (``_chunks.TooLarge`` past ``limit`` bytes)."""
        self._out.limit = limit
        try:
            try:
                self._plain.clear_memo()
                self._plain.dump(value)
            except _chunks.TooLarge:
                raise
            except Exception:
                self._renew()  # cloudpickle starts afresh, so its memo is always empty here
                self._out.limit = limit
                self._cloud.dump(value)
        except BaseException:
            self._renew()
            raise
        return self._out.chunks()


def encode_value(item_id: int, value: Any, started: float, finished: float,
                 limit: int | None = None) -> ResultRecord:
    """Pickle a call's return value; one that cannot be pickled or passes ``limit`` bytes
    (``max_result_size``) becomes a clear error."""
    if is_small_atom(value) and (limit is None or limit >= _SMALL + 64):
        # Most results of quick calls: immutable, so it travels as it is, in one pickle with
        # the others of its part, and cannot fail to unpickle.
        return ResultRecord(item_id, True, b"", qualname(value), None, started, finished,
                            (), True, value)
    try:
        data = _ValuePickler.current().dumps(value, limit)
    except _chunks.TooLarge:
        too_large = ResultTooLarge(
            f"the result of call {item_id} (a {qualname(value)}) is larger than "
            f"max_result_size={limit} bytes once pickled, so it was not sent back (the call is "
            "not retried). Return a smaller result, write large outputs to S3 yourself and "
            "return where they are, or raise max_result_size (STARBURST_MAX_RESULT_SIZE) if "
            "the client and the workers have memory for twice that size.")
        return encode_exception(item_id, too_large, started, finished, traceback_text="")
    except Exception as exc:
        error = SerializationError(
            f"the result of call {item_id} (a {qualname(value)}) could not be pickled to send "
            f"it back: {type(exc).__name__}: {exc}. Return plain data (numbers, strings, lists, "
            "dicts, arrays) or make the type picklable."
        )
        return encode_exception(item_id, error, started, finished, traceback_text="")
    return ResultRecord(item_id, True, data, qualname(value), None, started, finished)


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
    type_name, message = qualname(exc), str(exc)
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
    if record.atom:
        return True, record.value
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
