"""Large pickles as lists of buffers: pickled, framed, stored and read back without joining.

:func:`dumps` pickles into a :class:`Chunks`: the pickler's own frames (about 64 KiB each)
plus every large ``bytes`` payload by reference, which the C pickler hands to ``write`` whole,
so pickling a 1 GB ``bytes`` costs no second gigabyte.  It stops with :class:`TooLarge` as soon
as the pickle passes ``limit``.

:func:`pack` pickles a record in which some values are :class:`Chunks` with those values out
of band (a reference by index), after the record's own small pickle::

    8-byte count n | 8-byte length of the pickle | n 8-byte lengths | pickle | chunks 0..n-1

and :func:`unpack` reads it back with each of them as a memoryview into what was read: nothing
is copied until the value itself is unpickled from that view.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Iterable
from typing import Any

__all__ = ["Buffer", "Chunks", "Collector", "TooLarge", "concat", "dumps", "pack", "unpack", "parts_of", "size_of", "joined"]

Buffer = bytes | bytearray | memoryview
PROTOCOL = 5
_Q = struct.Struct(">Q")


class TooLarge(Exception):
    """A pickle passed its limit; ``size`` is how far it got (more than ``limit``)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.size, self.limit = size, limit


class Chunks:
    """Buffers that stand for their concatenation; ``len`` is its size in bytes.

    Pickled the ordinary way it becomes ``bytes`` (joined); :func:`pack` keeps it apart.
    """

    __slots__ = ("parts", "size")

    def __init__(self, parts: Iterable[Buffer] = (), size: int | None = None) -> None:
        """``size`` is the parts' total, when the caller knows it already."""
        self.parts: list[Buffer] = list(parts)
        self.size = sum(memoryview(p).nbytes for p in self.parts) if size is None else size

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Chunks):
            other = bytes(other)
        try:
            return bytes(self) == memoryview(other)  # type: ignore[arg-type]
        except TypeError:
            return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return bytes, (bytes(self),)

    def __repr__(self) -> str:
        return f"Chunks({len(self.parts)} parts, {self.size} bytes)"


def parts_of(data: Buffer | Chunks) -> list[Buffer]:
    """The buffers of ``data``, one buffer or :class:`Chunks`."""
    return data.parts if isinstance(data, Chunks) else [data]


def joined(data: Buffer | Chunks) -> Buffer:
    """``data`` as one buffer: :class:`Chunks` joined (a copy), a buffer as it is."""
    return bytes(data) if isinstance(data, Chunks) else data


def size_of(data: Buffer | Chunks) -> int:
    """The size in bytes of ``data``, one buffer or :class:`Chunks`."""
    return data.size if isinstance(data, Chunks) else memoryview(data).nbytes


_JOIN_BELOW = 16 * 1024  # parts this small are joined: copying them is cheaper than keeping them


def concat(values: Iterable[Buffer | Chunks]) -> tuple[Chunks, list[int]]:
    """``values`` one after the other as one :class:`Chunks`, and the size of each.

    Small ``bytes`` in a row are joined (thousands of small pickles become one buffer, so
    signing, storing and reading them costs one step, not thousands); larger buffers, such as
    the frames of a large pickle or a large ``bytes`` it holds, are kept by reference.
    """
    parts: list[Buffer] = []
    sizes: list[int] = []
    run: list[bytes] = []
    for value in values:
        if type(value) is bytes and len(value) < _JOIN_BELOW:
            run.append(value)
            sizes.append(len(value))
            continue
        pieces = value.parts if isinstance(value, Chunks) else [value]
        sizes.append(value.size if isinstance(value, Chunks) else memoryview(value).nbytes)
        for piece in pieces:
            if type(piece) is bytes and len(piece) < _JOIN_BELOW:
                run.append(piece)
                continue
            if run:
                parts.append(b"".join(run))
                run = []
            parts.append(piece)
    if run:
        parts.append(b"".join(run))
    return Chunks(parts, sum(sizes)), sizes


class Collector:
    """A file whose ``write`` keeps a ``bytes`` it is given instead of copying it (what else it
    is given, such as a ``bytearray`` the caller may change later, is copied)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        self.parts: list[Buffer] = []
        self.size = 0

    def write(self, data: Buffer) -> int:
        n = memoryview(data).nbytes
        self.size += n
        if self.limit is not None and self.size > self.limit:
            raise TooLarge(self.size, self.limit)
        self.parts.append(data if isinstance(data, bytes) else bytes(data))
        return n

    def chunks(self) -> Chunks:
        """What was written; the next ``write`` starts a new :class:`Chunks`."""
        out = Chunks(self.parts, self.size)
        self.reset()
        return out


def dumps(obj: Any, pickler: type[pickle.Pickler] = pickle.Pickler, *,
          limit: int | None = None) -> Chunks:
    """Pickle ``obj`` (protocol 5) with ``pickler`` into :class:`Chunks`.

    Raises:
        TooLarge: the pickle passed ``limit`` bytes (pickling stopped there).
    """
    collector = Collector(limit)
    pickler(collector, PROTOCOL).dump(obj)
    return collector.chunks()


def _out_of_band(index: int) -> memoryview:
    """Stands for the ``index``-th out-of-band value in a :func:`pack` pickle."""
    raise pickle.UnpicklingError("out-of-band data outside unpack()")


class _OutOfBand(pickle.Pickler):
    # A dispatch table, not persistent_id: the pickler calls persistent_id for every object,
    # which costs a Python call per number in a large record; the table only for Chunks.
    def __init__(self, file: Any, out: list[Chunks]) -> None:
        self._out = out
        self.dispatch_table = {Chunks: self._reduce}  # read by the C pickler's __init__
        super().__init__(file, PROTOCOL)

    def _reduce(self, chunks: Chunks) -> tuple[Any, ...]:
        self._out.append(chunks)
        return _out_of_band, (len(self._out) - 1,)


class _InBand(pickle.Unpickler):
    def __init__(self, file: Any, views: list[memoryview]) -> None:
        super().__init__(file)
        self._views = views

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name == "_out_of_band":
            return self._views.__getitem__
        return super().find_class(module, name)


def pack(obj: Any) -> Chunks:
    """Pickle ``obj`` (stdlib pickle) with the :class:`Chunks` inside it out of band."""
    out: list[Chunks] = []
    stream = io.BytesIO()
    _OutOfBand(stream, out).dump(obj)
    pickled = stream.getvalue()
    table = b"".join([_Q.pack(len(out)), _Q.pack(len(pickled)),
                      *(_Q.pack(c.size) for c in out)])
    parts: list[Buffer] = [table, pickled]
    for chunks in out:
        parts.extend(chunks.parts)
    return Chunks(parts, len(table) + len(pickled) + sum(c.size for c in out))


def unpack(data: Buffer) -> Any:
    """Read what :func:`pack` wrote; its out-of-band values are memoryviews into ``data``."""
    view = memoryview(data)
    try:
        (count,), (length,) = _Q.unpack_from(view, 0), _Q.unpack_from(view, 8)
        offset = 16 + 8 * count
        sizes = [_Q.unpack_from(view, 16 + 8 * i)[0] for i in range(count)]
    except struct.error:
        raise pickle.UnpicklingError("packed data is truncated") from None
    pickled = view[offset:offset + length]
    offset += length
    views = []
    for size in sizes:
        views.append(view[offset:offset + size])
        offset += size
    if offset != len(view) or len(pickled) != length:
        raise pickle.UnpicklingError("packed data does not match its table of sizes")
    return _InBand(io.BytesIO(pickled), views).load()
