"""The object store seam: a handful of primitives over flat keys.

A store is opened on a URL that already names the session (``file:///tmp/x/sessions/abc`` or
``s3://bucket/starburst/sessions/abc``); keys are relative to it and use ``/`` as separator.
The client and the workers open the same URL, so only that URL travels to a worker.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .._chunks import Buffer, Chunks
from .._stats import RequestStats

__all__ = ["ObjectStore"]


@runtime_checkable
class ObjectStore(Protocol):
    """Where payloads and results live.  Implementations must be safe to share between threads."""

    url: str
    """The URL that opens this same store in another process (see ``open_store``)."""

    stats: RequestStats

    def put(self, key: str, data: Buffer | Chunks) -> None:
        """Store ``data`` at ``key`` atomically: a reader sees all of it or nothing.

        ``data`` held as :class:`~starburst_executor._chunks.Chunks` is stored as their
        concatenation, written chunk by chunk (never joined in memory when it is large)."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Store ``data`` at ``key`` only if no object is there; return whether it was stored.

        Atomic: of several writers racing for one key, exactly one gets ``True`` (a claim).
        """

    def get(self, key: str) -> bytes:
        """Return the object at ``key``; raise ``ObjectNotFound`` when there is none."""

    def list(self, prefix: str, start_after: str = "") -> list[str]:
        """Return the keys under ``prefix`` greater than ``start_after``, sorted, in one listing."""

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under ``prefix`` (``""``: the whole session)."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
