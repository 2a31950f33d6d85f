"""Helpers for testing code that uses starburst-executor without AWS.

* :class:`MotoServer` runs a moto server on 127.0.0.1 and points boto3 at it.
* :class:`FargateEmulator` runs the ECS tasks started on that server (subprocesses by default,
  containers with :class:`DockerRunner`),
  stops them with their real exit codes, and injects faults (OOM, Spot interruption, a task that
  never starts, ``RunTask`` failures, S3 ``SlowDown``).
* :class:`AwsProxy` sits between boto3 and moto, counting requests by service and operation.
"""

from __future__ import annotations

from .aws_proxy import AwsProxy
from .docker_runner import DockerRunner
from .fargate import ContainerSpec, EmulatedTask, FargateEmulator, SubprocessRunner
from .moto_server import MotoServer

__all__ = [
    "MotoServer",
    "FargateEmulator",
    "EmulatedTask",
    "ContainerSpec",
    "SubprocessRunner",
    "DockerRunner",
    "AwsProxy",
]
