"""An in-process store: real code, the fake that tests and users' own tests can use.

Stores opened on the same ``memory://NAME`` URL in one process share their objects, so a
client and workers running as threads (see ``starburst_executor.testing``) can talk through it.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from urllib.parse import urlparse

from .._chunks import Buffer, Chunks
from ..errors import ObjectNotFound, StoreError
from .._stats import RequestStats

__all__ = ["MemoryStore"]

_SHARED: "weakref.WeakValueDictionary[str, _Objects]" = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


class _Objects:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: dict[str, bytes] = {}
        self.keys: list[str] = []  # sorted


class MemoryStore:
    """Objects in a dict shared by every ``MemoryStore`` of the same name in this process."""

    def __init__(self, name: str = "default"):
        self.url = f"memory://{name}"
        self.stats = RequestStats()
        with _SHARED_LOCK:
            objects = _SHARED.get(name)
            if objects is None:
                objects = _SHARED[name] = _Objects()
        self._objects = objects

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        parsed = urlparse(url)
        if parsed.scheme != "memory":
            raise StoreError(f"not a memory:// URL: {url!r}")
        return cls(parsed.netloc + parsed.path)

    def put(self, key: str, data: Buffer | Chunks) -> None:
        objects = self._objects
        with objects.lock:
            if key not in objects.data:
                bisect.insort(objects.keys, key)
            objects.data[key] = value = bytes(data)
            self.stats.count("put")
            self.stats.bytes_out += len(value)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        objects = self._objects
        with objects.lock:
            self.stats.count("put")
            if key in objects.data:
                return False
            bisect.insort(objects.keys, key)
            objects.data[key] = bytes(data)
            self.stats.bytes_out += len(data)
            return True

    def get(self, key: str) -> bytes:
        objects = self._objects
        with objects.lock:
            self.stats.count("get")
            try:
                data = objects.data[key]
            except KeyError:
                raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
            self.stats.bytes_in += len(data)
            return data

    def list(self, prefix: str, start_after: str = "") -> list[str]:
        objects = self._objects
        with objects.lock:
            self.stats.count("list")
            start = bisect.bisect_left(objects.keys, prefix)
            if start_after:
                start = max(start, bisect.bisect_right(objects.keys, start_after))
            out = []
            for key in objects.keys[start:]:
                if not key.startswith(prefix):
                    break
                out.append(key)
            return out

    def delete_prefix(self, prefix: str) -> None:
        objects = self._objects
        with objects.lock:
            self.stats.count("delete")
            doomed = [k for k in objects.keys if k.startswith(prefix)]
            for key in doomed:
                del objects.data[key]
            objects.keys = [k for k in objects.keys if not k.startswith(prefix)]

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"MemoryStore({self.url!r})"
