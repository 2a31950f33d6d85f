"""Authenticating what travels through the store: an HMAC-SHA256 bound to the object's key.

Each session has a secret (:func:`new_secret`) that never touches the store: the client keeps it
in memory and hands it to its workers in their environment (:data:`ENV_SECRET`).  Every object
that is unpickled, by the client or a worker, carries ``sign(secret, key, data)``; a reader
checks it with :func:`verify` before it unpickles anything, so an object planted, moved,
truncated or altered by someone who can write the store but not read a worker's environment
is refused with :class:`~starburst_executor.errors.IntegrityError`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable

from .errors import ConfigError, IntegrityError

__all__ = ["MAC_SIZE", "ENV_SECRET", "new_secret", "secret_to_env", "secret_from_env",
           "sign", "verify"]

MAC_SIZE = hashlib.sha256().digest_size
SECRET_SIZE = 32

ENV_SECRET = "STARBURST_SESSION_SECRET"
"""The worker's environment variable that holds the session secret (hex): the one secret a
worker is given; it is never written to the store or a log."""

Buffer = bytes | bytearray | memoryview


def new_secret() -> bytes:
    """A fresh session secret."""
    return secrets.token_bytes(SECRET_SIZE)


def secret_to_env(secret: bytes) -> str:
    return secret.hex()


def secret_from_env(text: str) -> bytes:
    """The secret from its environment form; a malformed one is a :class:`ConfigError`."""
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 16:
        raise ConfigError(f"{ENV_SECRET} is not a session secret: this worker was started by "
                          "something other than starburst-executor")
    return secret


def sign(secret: bytes, key: str, chunks: Iterable[Buffer]) -> bytes:
    """The MAC of the concatenated ``chunks`` stored under ``key`` (no copy of the data)."""
    name = key.encode()
    mac = hmac.new(secret, struct.pack(">I", len(name)) + name, hashlib.sha256)
    for chunk in chunks:
        mac.update(chunk)
    return mac.digest()


def verify(secret: bytes, key: str, data: Buffer) -> memoryview:
    """Check the MAC that ends ``data`` (read from ``key``); return the data before it.

    Raises:
        IntegrityError: the MAC is missing or wrong: the object was not written under this key
            by this session (planted, moved, truncated or altered).
    """
    view = memoryview(data)
    if len(view) < MAC_SIZE:
        raise IntegrityError(key, "it is shorter than its authentication code")
    body, mac = view[:-MAC_SIZE], view[-MAC_SIZE:]
    if not hmac.compare_digest(sign(secret, key, (body,)), mac):
        raise IntegrityError(key, "its authentication code does not match")
    return body
