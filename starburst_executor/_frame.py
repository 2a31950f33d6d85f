"""Framing: how every object in the store is wrapped, authenticated and checked.

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
"""

from __future__ import annotations

import json
import pickle
import platform
import struct
import sys
from typing import Any

import cloudpickle

from . import _auth, _chunks
from .errors import IntegrityError, PayloadVersionError, SerializationError

__all__ = ["FORMAT_VERSION", "MAGIC", "PROTOCOL", "PYTHON_MINOR", "CLOUDPICKLE_VERSION",
           "dump", "dump_chunks", "read_header", "check_header", "open_frame", "load"]

MAGIC = b"SBX1"
FORMAT_VERSION = 4  # 2: frames end with an HMAC, result records carry the call's output;
# 3: batches and results are packed (_chunks), their large values out of band; 4: in columns
_LEN = struct.Struct(">I")
PYTHON_MINOR = "%d.%d" % sys.version_info[:2]
CLOUDPICKLE_VERSION: str = cloudpickle.__version__
PROTOCOL = 5

# Kinds whose body is JSON, not a pickle.
_JSON_KINDS = frozenset({"assign", "session"})


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
    prefix = b"".join((MAGIC, _LEN.pack(len(header)), header))
    parts = [prefix, *body.parts]
    return _chunks.Chunks([*parts, _auth.sign(secret, key, parts)],
                          len(prefix) + body.size + _auth.MAC_SIZE)


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
