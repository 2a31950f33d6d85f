"""starburst-executor: run existing Python code on AWS ECS Fargate through ``concurrent.futures``.

::

    from starburst_executor import FargateExecutor

    with FargateExecutor(max_workers=50, cpu=4, memory="8GB") as executor:
        results = list(executor.map(simulate, parameters))

The public names are imported on first use, so a worker process (which imports this package
too) starts without loading the executor.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    CostLimitExceeded,
    ExecutorBroken,
    ImageError,
    InitializerFailed,
    IntegrityError,
    LaunchError,
    ArgumentsTooLarge,
    ObjectNotFound,
    PayloadTooLarge,
    PayloadVersionError,
    RemoteError,
    RemoteTraceback,
    ResultTooLarge,
    SerializationError,
    SessionStopped,
    StarburstError,
    StoreAccessDenied,
    StoreError,
    WorkerLost,
)

if TYPE_CHECKING:
    from ._future import CallMetadata, StarburstFuture
    from .engine import Usage
    from .config import Config, load_config
    from .executor import FargateExecutor, starburst_cluster, starburst_map
    from .session import Session, attach

__version__ = "0.1.0"

_LAZY = {
    "FargateExecutor": ".executor",
    "starburst_map": ".executor",
    "starburst_cluster": ".executor",
    "StarburstFuture": "._future",
    "CallMetadata": "._future",
    "Usage": ".engine",
    "Config": ".config",
    "load_config": ".config",
    "attach": ".session",
    "Session": ".session",
}

__all__ = [
    "FargateExecutor",
    "starburst_map",
    "starburst_cluster",
    "StarburstFuture",
    "CallMetadata",
    "Usage",
    "Config",
    "load_config",
    "attach",
    "Session",
    "StarburstError",
    "ConfigError",
    "SerializationError",
    "PayloadVersionError",
    "IntegrityError",
    "PayloadTooLarge",
    "ResultTooLarge",
    "ArgumentsTooLarge",
    "RemoteError",
    "RemoteTraceback",
    "StoreError",
    "ObjectNotFound",
    "StoreAccessDenied",
    "LaunchError",
    "CostLimitExceeded",
    "WorkerLost",
    "SessionStopped",
    "ExecutorBroken",
    "InitializerFailed",
    "ImageError",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
