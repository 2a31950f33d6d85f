"""Pick the store and the launcher of a backend by name.  Nothing here touches the network."""

from __future__ import annotations

import dataclasses
import importlib
import os
import tempfile
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

from .config import Config
from .errors import ConfigError
from .launch.base import Launcher

__all__ = ["Backend", "build_backend", "session_url"]

# backend name -> (module, class, install hint)
LAUNCHERS: dict[str, tuple[str, str, str]] = {
    "local": ("starburst_executor.launch.local", "LocalLauncher", ""),
    "docker": ("starburst_executor.launch.docker", "DockerLauncher",
               "pip install 'starburst-executor[docker]'"),
    "fargate": ("starburst_executor.launch.fargate", "FargateLauncher", "pip install boto3"),
}


@dataclasses.dataclass(frozen=True)
class Backend:
    """A backend ready to use: where the session's objects go and who starts workers."""

    store_url: str
    launcher: Launcher
    delete_session: bool  # a private temporary store is removed at shutdown
    store_name: str
    launcher_name: str


def session_url(root: str, session_id: str) -> str:
    """The URL of a session's store below ``root`` (query options kept)."""
    parts = urlsplit(root)
    path = parts.path.rstrip("/") + f"/sessions/{session_id}"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _store_root(config: Config) -> tuple[str, bool]:
    if config.store:
        return config.store, False
    if config.backend in ("local", "docker"):
        base = Path(tempfile.gettempdir()) / f"starburst-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        return base.as_uri(), True
    if not config.bucket:
        raise ConfigError(
            "no S3 bucket is configured for the fargate backend: run `starburst setup` (it "
            "creates one and writes the config file), or pass bucket=... / set STARBURST_BUCKET"
        )
    root = f"s3://{config.bucket}/{config.prefix.strip('/')}"
    options = {k: v for k, v in (("region", config.region), ("kms_key_id", config.kms_key_id)) if v}
    if options:
        root += "?" + urlencode(options)
    return root, False


def build_backend(config: Config, session_id: str) -> Backend:
    """Build the store URL and the launcher of ``config.backend`` (validating its settings)."""
    root, temporary = _store_root(config)
    url = session_url(root, session_id)
    module_name, class_name, hint = LAUNCHERS[config.backend]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"backend={config.backend!r} needs a missing package ({exc}): {hint}") from None
    launcher: Launcher = getattr(module, class_name).from_config(config, session_id, url)
    store_name = {"s3": "s3", "file": "file", "memory": "memory"}.get(urlsplit(url).scheme, "store")
    launcher_name = {"fargate": "ecs", "docker": "docker", "local": "local"}[config.backend]
    return Backend(url, launcher, temporary, store_name, launcher_name)
