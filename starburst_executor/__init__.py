"""starburst-executor: run existing Python code on AWS ECS Fargate through ``concurrent.futures``.

::

    from starburst_executor import FargateExecutor

    with FargateExecutor(max_workers=50, cpu=4, memory="8GB") as executor:
        results = list(executor.map(simulate, parameters))
"""

from __future__ import annotations

from ._future import CallMetadata, StarburstFuture
from ._manager import Usage
from .config import Config, load_config
from .errors import (
    ConfigError,
    CostLimitExceeded,
    ExecutorBroken,
    LaunchError,
    ObjectNotFound,
    PayloadVersionError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    StarburstError,
    StoreAccessDenied,
    StoreError,
    WorkerLost,
)
from .executor import FargateExecutor, starburst_cluster, starburst_map

__version__ = "0.1.0"

__all__ = [
    "FargateExecutor",
    "starburst_map",
    "starburst_cluster",
    "StarburstFuture",
    "CallMetadata",
    "Usage",
    "Config",
    "load_config",
    "StarburstError",
    "ConfigError",
    "SerializationError",
    "PayloadVersionError",
    "RemoteError",
    "RemoteTraceback",
    "StoreError",
    "ObjectNotFound",
    "StoreAccessDenied",
    "LaunchError",
    "CostLimitExceeded",
    "WorkerLost",
    "ExecutorBroken",
]
