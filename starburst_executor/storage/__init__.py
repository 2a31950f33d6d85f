"""Object stores, chosen by URL scheme and imported lazily.

==========  ==========================================  ==================
scheme      class                                       needs
==========  ==========================================  ==================
``file``    :class:`~.local.LocalStore`                 nothing
``memory``  :class:`~.memory.MemoryStore` (in-process)  nothing
``s3``      :class:`~.s3.S3Store`                       boto3
==========  ==========================================  ==================
"""

from __future__ import annotations

import importlib
from urllib.parse import urlparse

from ..errors import ConfigError
from .base import ObjectStore

__all__ = ["ObjectStore", "open_store", "is_remote", "STORES"]

STORES: dict[str, tuple[str, str, str]] = {
    "file": ("starburst_executor.storage.local", "LocalStore", ""),
    "memory": ("starburst_executor.storage.memory", "MemoryStore", ""),
    "s3": ("starburst_executor.storage.s3", "S3Store", "pip install boto3"),
}


def open_store(url: str) -> ObjectStore:
    """Open the store at ``url``; its class is picked by the URL scheme."""
    scheme = urlparse(url).scheme
    try:
        module_name, class_name, hint = STORES[scheme]
    except KeyError:
        raise ConfigError(
            f"no object store for URL {url!r}: use one of {', '.join(s + '://' for s in STORES)}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"the {scheme}:// store needs a missing package ({exc}): {hint}") from None
    store: ObjectStore = getattr(module, class_name).from_url(url)
    return store


def is_remote(store: ObjectStore) -> bool:
    """Whether a round trip to ``store`` crosses a network (S3), where overlapping them pays;
    a local folder or memory answers in microseconds."""
    return urlparse(store.url).scheme not in ("file", "memory")
