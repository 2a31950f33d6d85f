"""The docker backend passes the host's AWS credentials into containers only when asked."""

from __future__ import annotations

import types
from typing import Any

import pytest

from starburst_executor import _keys
from starburst_executor.config import load_config
from starburst_executor.launch.base import TaskHandle, WorkerSpec
from starburst_executor.launch.docker import DockerLauncher

SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class _Client:
    """The few docker SDK calls a launch makes; records each container's environment."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.images = types.SimpleNamespace(get=lambda image: object())
        self.containers = types.SimpleNamespace(run=self._run)

    def _run(self, image: str, **kwargs: Any) -> Any:
        self.runs.append(kwargs)
        return types.SimpleNamespace(id=f"c{len(self.runs)}")


@pytest.fixture
def host_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAHOST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "host-token")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")


def _launch(asked: bool | None) -> dict[str, str]:
    config = load_config({"backend": "docker", "image": "worker:1",
                          "docker_aws_credentials": asked})
    client = _Client()
    launcher = DockerLauncher.from_config(config, "s1", "s3://bucket/prefix/sessions/s1")
    launcher._client = client
    spec = WorkerSpec("w00000", {_keys.ENV_STORE_URL: "s3://bucket/prefix/sessions/s1"})
    assert isinstance(launcher.launch([spec])[0], TaskHandle)
    return dict(client.runs[0]["environment"])


def test_credentials_stay_on_the_host_by_default(host_keys: None) -> None:
    env = _launch(None)
    assert not set(SECRETS) & set(env)
    assert env["AWS_REGION"] == "eu-west-1"  # where the store is, not who may read it


def test_credentials_are_passed_when_asked(host_keys: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    env = _launch(True)
    assert env["AWS_SECRET_ACCESS_KEY"] == "host-secret"
    assert env["AWS_SESSION_TOKEN"] == "host-token"
    monkeypatch.setenv("STARBURST_DOCKER_AWS_CREDENTIALS", "1")
    assert load_config().docker_aws_credentials
