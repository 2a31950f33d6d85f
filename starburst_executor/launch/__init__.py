"""Launchers, and the backend registry: a backend name -> its store and its launcher.

===========  ===============================================  ==================================
backend      launcher                                         store (unless ``store=`` is given)
===========  ===============================================  ==================================
``local``    :class:`~.local.LocalLauncher`                   a temporary directory
``docker``   :class:`~.docker.DockerLauncher`                 a temporary directory, bind-mounted
``fargate``  :class:`~.fargate.launcher.FargateLauncher`      ``s3://<bucket>/<prefix>``
===========  ===============================================  ==================================

This table is the only place that picks classes by ``config.backend``; the launcher modules are
imported when a backend is opened, so importing this package loads neither docker nor boto3.
Nothing here touches the network.
"""

from __future__ import annotations

import dataclasses
import importlib
from urllib.parse import urlsplit, urlunsplit

from ..config import Config, store_root
from ..errors import ConfigError
from ..storage.private import user_store_root
from .base import Launcher

__all__ = ["Backend", "open_backend", "LAUNCHERS"]

LAUNCHERS: dict[str, tuple[str, str, str]] = {
    "local": ("starburst_executor.launch.local", "LocalLauncher", ""),
    "docker": ("starburst_executor.launch.docker", "DockerLauncher",
               "pip install 'starburst-executor[docker]'"),
    "fargate": ("starburst_executor.launch.fargate.launcher", "FargateLauncher",
                "pip install boto3"),
}
"""backend name -> (module, launcher class, install hint for a missing package)."""

_LAUNCHER_NAMES = {"fargate": "ecs", "docker": "docker", "local": "local"}
_STORE_NAMES = {"s3": "s3", "file": "file", "memory": "memory"}


@dataclasses.dataclass(frozen=True)
class Backend:
    """A backend ready to use: where the session's objects go and who starts workers."""

    store_url: str
    launcher: Launcher
    delete_session: bool  # a private temporary store is removed at shutdown
    store_name: str
    launcher_name: str


def _session_url(root: str, session_id: str) -> str:
    """The URL of a session's store below ``root`` (query options kept)."""
    parts = urlsplit(root)
    path = parts.path.rstrip("/") + f"/sessions/{session_id}"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _store_root(config: Config) -> tuple[str, bool]:
    """(store root URL, whether it is a private temporary directory)."""
    if config.store:
        return config.store, False
    if config.backend in ("local", "docker"):
        return user_store_root().as_uri(), True  # created private, or refused
    return store_root(config), False


def open_backend(config: Config, session_id: str) -> Backend:
    """The store URL and the launcher of ``config.backend`` for one session.

    The launcher's settings are validated here (``Launcher.from_config``), without a network
    call; with ``auto_build`` and no image, the docker and Fargate launchers build the image at
    their first launch.

    Raises:
        ConfigError: a setting the backend cannot use, or a package it needs is missing.
    """
    root, temporary = _store_root(config)
    url = _session_url(root, session_id)
    module_name, class_name, hint = LAUNCHERS[config.backend]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"backend={config.backend!r} needs a missing package ({exc}): {hint}") from None
    launcher: Launcher = getattr(module, class_name).from_config(config, session_id, url)
    store_name = _STORE_NAMES.get(urlsplit(url).scheme, "store")
    return Backend(url, launcher, temporary, store_name, _LAUNCHER_NAMES[config.backend])
