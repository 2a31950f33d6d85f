"""The local store's root: a directory only its user can reach, or a clear refusal.

Whoever can write the local store can plant an object the client reads, so the root of the
local and docker backends' store is private: :func:`user_store_root` picks a per-user place
(``$XDG_RUNTIME_DIR/starburst`` when that directory is the user's own, else
``<tmp>/starburst-<uid>``) and :func:`private_directory` creates it atomically with mode 0700,
or, when it exists, checks it is a real directory (not a symlink) owned by this user and not
writable by group or others.  Anything else is refused with a :class:`ConfigError` naming the
path and what to do.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError

__all__ = ["user_store_root", "private_directory"]


def user_store_root(env: Mapping[str, str] | None = None) -> Path:
    """The private directory under which this user's local sessions live (created, checked)."""
    env = os.environ if env is None else env
    if not hasattr(os, "getuid"):  # no POSIX owners to check: the user's temp dir is private
        return Path(tempfile.gettempdir()) / "starburst"
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and _is_private(Path(runtime)):
        return private_directory(Path(runtime) / "starburst")
    return private_directory(Path(tempfile.gettempdir()) / f"starburst-{os.getuid()}")


def _is_private(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def private_directory(path: Path) -> Path:
    """Create ``path`` with mode 0700, or check the existing one is private; return it.

    Raises:
        ConfigError: ``path`` is a symlink or not a directory, belongs to another user, or
            is writable by group or others.
    """
    try:
        os.mkdir(path, 0o700)  # atomic: nobody can slip a directory of theirs in between
        return path
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create the local store directory {path}: {exc}; set "
                          "store='file:///a/directory/of/yours'") from None
    info = path.lstat()
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "it is a symlink"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "it is not a directory"
    elif info.st_uid != os.geteuid():
        problem = f"it belongs to another user (uid {info.st_uid})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"others may write it (mode {stat.S_IMODE(info.st_mode):o})"
    if problem is None:
        return path
    raise ConfigError(
        f"refusing the local store directory {path}: {problem}, so someone else could plant "
        "objects that this process would read. If it is yours, remove it (starburst creates it "
        "anew, private); otherwise set store='file:///a/directory/of/yours'."
    )
