"""A store in a local directory: the local backend's, and a real-code fake for tests."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from .._chunks import Buffer, Chunks, parts_of, size_of
from ..errors import ObjectNotFound, StoreAccessDenied, StoreError
from .._stats import RequestStats

__all__ = ["LocalStore"]


class LocalStore:
    """Objects as files below ``root``.  Writes go to a temporary file and are renamed into
    place, so a concurrent reader never sees half an object."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()
        self.stats = RequestStats()
        self._lock = threading.Lock()
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except PermissionError as exc:
            raise StoreAccessDenied(f"cannot create store directory {self.root}: {exc}") from None

    @classmethod
    def from_url(cls, url: str) -> LocalStore:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise StoreError(f"not a file:// URL: {url!r}")
        return cls(unquote(parsed.path))

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"invalid key {key!r}")
        return self.root / key

    def put(self, key: str, data: Buffer | Chunks) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.writelines(parts_of(data))
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        with self._lock:
            self.stats.count("put")
            self.stats.bytes_out += size_of(data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        # Written aside, then hard-linked into place: link() fails if the name exists, and a
        # reader never sees the object half written (O_EXCL alone would show it empty).
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.link(tmp, path)
            stored = True
        except FileExistsError:
            stored = False
        finally:
            os.unlink(tmp)
        with self._lock:
            self.stats.count("put")
            if stored:
                self.stats.bytes_out += len(data)
        return stored

    def get(self, key: str) -> bytes:
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            with self._lock:
                self.stats.count("get")
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
        with self._lock:
            self.stats.count("get")
            self.stats.bytes_in += len(data)
        return data

    def list(self, prefix: str, start_after: str = "") -> list[str]:
        with self._lock:
            self.stats.count("list")
        # One scandir of the directory that holds the prefix (the manager lists results/
        # many times a second); subdirectories matching the prefix are walked whole.
        directory, _, stem = prefix.rpartition("/")
        rel = directory + "/" if directory else ""
        keys: list[str] = []
        try:
            with os.scandir(self.root / directory if directory else self.root) as entries:
                for entry in entries:
                    name = entry.name
                    if not name.startswith(stem) or name.startswith(".tmp-"):
                        continue
                    if entry.is_dir():
                        keys.extend(k for k in _walk(entry.path, rel + name + "/")
                                    if k > start_after)
                    elif rel + name > start_after:
                        keys.append(rel + name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        keys.sort()
        return keys

    def delete_prefix(self, prefix: str) -> None:
        with self._lock:
            self.stats.count("delete")
        if not prefix:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        for key in self.list(prefix):
            try:
                os.unlink(self._path(key))
            except FileNotFoundError:
                pass

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"


def _walk(path: str, rel: str) -> list[str]:
    """Every key below the directory ``path``, whose key prefix is ``rel``."""
    keys = []
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name.startswith(".tmp-"):
                continue
            if entry.is_dir():
                keys.extend(_walk(entry.path, rel + entry.name + "/"))
            else:
                keys.append(rel + entry.name)
    return keys
