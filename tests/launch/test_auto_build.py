"""auto_build=True with no image: the docker and Fargate launchers build the worker image at their
first launch, once, never when they are made (no network in the executor's constructor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from starburst_executor import FargateExecutor, ImageError
from starburst_executor import image as image_module
from starburst_executor.config import load_config
from starburst_executor.errors import ConfigError
from starburst_executor.launch import open_backend
from starburst_executor.launch.auto_build import WorkerImage
from starburst_executor.launch.base import LaunchFailure, TaskHandle, WorkerSpec
from starburst_executor.testing import FargateEmulator

from ..aws_fixtures import (  # noqa: F401
    boto, fargate, fargate_config, make_bucket, make_cluster, moto_server, sleeper)

NO_DAEMON = ImageError("no Docker daemon answers: start one with `dockerd &`")


def _docker_config(**settings: Any) -> Any:
    return load_config({"backend": "docker", "auto_build": True, **settings}, env={},
                       path=Path("/nonexistent/starburst.toml"))


def test_executor_construction_builds_nothing(mocker: Any) -> None:
    ensure = mocker.patch.object(image_module, "ensure_image", side_effect=NO_DAEMON)
    ex = FargateExecutor(backend="docker", auto_build=True)
    ex.shutdown()
    assert ensure.call_count == 0


def test_a_failed_build_fails_the_launch_with_the_reason(mocker: Any) -> None:
    ensure = mocker.patch.object(image_module, "ensure_image", side_effect=NO_DAEMON)
    backend = open_backend(_docker_config(), "s1")
    assert ensure.call_count == 0 and backend.launcher.image is None
    (failure,) = backend.launcher.launch([WorkerSpec("w1", {})])
    assert isinstance(failure, LaunchFailure) and not failure.retryable
    assert "dockerd" in failure.reason
    assert ensure.call_count == 1
    assert ensure.call_args.kwargs.get("push") is False  # docker: build for the local daemon
    backend.launcher.close()


def test_the_image_is_built_once(mocker: Any, capsys: Any) -> None:
    ensure = mocker.patch.object(image_module, "ensure_image", return_value="worker:abc123")
    image = WorkerImage.from_config(_docker_config(), push=False)
    assert image.pending and image.known is None
    assert image.get() == image.get() == "worker:abc123"
    assert ensure.call_count == 1
    assert image.known == "worker:abc123" and not image.pending
    assert "building the worker image" in capsys.readouterr().err


def test_a_configured_image_is_not_rebuilt(mocker: Any) -> None:
    ensure = mocker.patch.object(image_module, "ensure_image")
    backend = open_backend(_docker_config(image="mine:1"), "s1")
    assert backend.launcher.image == "mine:1"
    assert WorkerImage.from_config(_docker_config(image="mine:1"), push=False).get() == "mine:1"
    backend.launcher.close()
    assert ensure.call_count == 0


def test_fargate_builds_pushes_and_runs_the_built_image(mocker: Any, fargate: FargateEmulator
                                                        ) -> None:
    built = "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:built"
    ensure = mocker.patch.object(image_module, "ensure_image", return_value=built)
    fargate.runner = sleeper()
    config = fargate_config(make_cluster(fargate.moto), make_bucket(fargate.moto), image=None,
                            auto_build=True)
    backend = open_backend(config, "s1")
    try:
        assert ensure.call_count == 0 and backend.launcher.image is None
        (handle,) = backend.launcher.launch([WorkerSpec("w1", {"A": "1"})])
        assert isinstance(handle, TaskHandle)
        assert ensure.call_count == 1 and ensure.call_args.kwargs.get("push") is True
        ecs = boto("ecs", fargate.moto)
        task = ecs.describe_tasks(cluster=config.cluster, tasks=[handle.task_id])["tasks"][0]
        definition = ecs.describe_task_definition(
            taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        assert definition["containerDefinitions"][0]["image"] == built
    finally:
        backend.launcher.close()


def test_fargate_without_image_or_auto_build_is_refused() -> None:
    with pytest.raises(ConfigError, match="starburst build"):
        open_backend(fargate_config("c", "bkt", image=None), "s1")
