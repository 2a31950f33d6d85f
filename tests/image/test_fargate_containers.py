"""The emulated Fargate with real containers: a map through ``FargateExecutor`` (the fargate
backend, S3 on moto) whose tasks run the worker image pushed to the stand-in registry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from starburst_executor import FargateExecutor
from starburst_executor.image import build_image
from starburst_executor.testing import MotoServer
from starburst_executor.testing.docker_runner import DockerRunner
from starburst_executor.testing.fargate import FargateEmulator

from ..aws_fixtures import aws, bucket, cluster, fargate_config, moto_server, unique  # noqa: F401
from ..docker_fixtures import (  # noqa: F401
    base_image,
    docker_client,
    local_config,
    registry,
    small_environment,
)

pytestmark = pytest.mark.timeout(300)
# What the worker needs for an s3:// store, besides cloudpickle.
S3_PINS = ("boto3", "botocore", "jmespath", "s3transfer", "urllib3", "python-dateutil", "six")


@pytest.fixture
def pushed_worker_image(aws: MotoServer, registry: str, docker_client: Any, base_image: str
                        ) -> str:
    from starburst_executor.image import capture_environment

    host = dict(capture_environment().pins)
    env = small_environment(*((name, host[name]) for name in S3_PINS))
    return build_image(local_config(), repository=unique("worker"), environment=env,
                       base_image=base_image, registry=registry, client=docker_client,
                       log=lambda line: None).uri


@pytest.fixture
def docker_fargate(moto_server: MotoServer, docker_client: Any, monkeypatch: pytest.MonkeyPatch
                   ) -> Iterator[FargateEmulator]:
    runner = DockerRunner(docker_client, memory=512)
    emulator = FargateEmulator(moto_server, runner=runner, stop_grace=1.0).start()
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield emulator
    finally:
        emulator.stop()
        runner.close()


def test_map_on_emulated_fargate_in_real_containers(
    pushed_worker_image: str, docker_fargate: FargateEmulator, cluster: str, bucket: str
) -> None:
    config = fargate_config(cluster, bucket, image=pushed_worker_image)
    settings = {k: getattr(config, k) for k in (
        "backend", "region", "cluster", "bucket", "image", "cpu", "memory")}
    offset = 100
    with FargateExecutor(max_workers=2, **settings) as ex:
        results = list(ex.map(lambda x: x + offset, range(30), chunksize=5, timeout=120))
        where = ex.submit(lambda: __import__("starburst_executor").__file__).result(120)
    assert results == [x + 100 for x in range(30)]
    assert where.startswith("/opt/starburst/worker/")  # ran in the image, not on the host
    assert docker_fargate.tasks and docker_fargate.wait_stopped(30)  # shutdown stopped them all
