"""DockerLauncher: the launcher contract with real containers of the worker image, plus what
only a container shows (memory limit and OOM kill, exit codes, labels, a missing daemon)."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from starburst_executor import _keys
from starburst_executor.config import load_config
from starburst_executor.launch.base import LaunchFailure, TaskHandle, TaskPhase, WorkerSpec
from starburst_executor.launch.docker import LABEL_SESSION, DockerLauncher
from starburst_executor.storage.local import LocalStore

from ..contracts._wire import assign, put_batch
from ..contracts.launcher_contract import LauncherContract, _spec, _wait_stopped
from ..aws_fixtures import aws, moto_server  # noqa: F401
from ..docker_fixtures import base_image, docker_client, worker_image  # noqa: F401

pytestmark = pytest.mark.timeout(300)


def _session() -> str:
    return "t" + uuid.uuid4().hex[:10]


class TestDockerLauncher(LauncherContract):
    startup_seconds = 60.0

    @pytest.fixture
    def launcher(self, worker_image: str, docker_client: Any) -> Iterator[DockerLauncher]:
        launcher = DockerLauncher(
            worker_image, session_id=_session(), memory=256, cpu=0.5, client=docker_client
        )
        yield launcher
        launcher.close()

    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        return LocalStore(tmp_path / "session")

    def test_stopped_worker_reports_sigterm_and_the_reason(
        self, launcher: DockerLauncher, store: LocalStore
    ) -> None:
        (handle,) = launcher.launch([_spec(store, idle=600)])
        assert isinstance(handle, TaskHandle)
        launcher.stop([handle], "test says stop")
        (state,) = _wait_stopped(launcher, [handle], 30)
        assert state.exit_code == 143  # SIGTERM, forwarded by the container's init
        assert state.stop_code == "UserInitiated"
        assert "test says stop" in (state.stopped_reason or "")

    def test_exit_code_and_log_of_a_failing_worker(
        self, launcher: DockerLauncher, store: LocalStore
    ) -> None:
        env = dict(_spec(store).env)
        del env[_keys.ENV_STORE_URL]  # the worker refuses to start without it
        (handle,) = launcher.launch([WorkerSpec("wbad", env)])
        assert isinstance(handle, TaskHandle)
        (state,) = _wait_stopped(launcher, [handle], 60)
        assert state.exit_code == 2
        assert state.stop_code == "EssentialContainerExited"
        assert "exit code 2" in (state.stopped_reason or "")
        assert state.started_at and state.stopped_at and state.stopped_at >= state.started_at
        assert "STARBURST_STORE_URL" in launcher.log_tail(handle)

    def test_memory_limit_ends_in_an_oom_kill(
        self, worker_image: str, docker_client: Any, store: LocalStore
    ) -> None:
        launcher = DockerLauncher(
            worker_image, session_id=_session(), memory=64, client=docker_client
        )
        try:
            # 256 MiB in a 64 MiB container
            put_batch(store, "big", operator.mul, [(0, (b"x", 256 * 2**20))])
            spec = _spec(store, idle=30)
            assign(store, spec.worker_id, 0, "big")
            (handle,) = launcher.launch([spec])
            assert isinstance(handle, TaskHandle)
            (state,) = _wait_stopped(launcher, [handle], 60)
            assert state.exit_code == 137
            assert "OutOfMemoryError" in (state.stopped_reason or "")
            assert not store.list(_keys.RESULTS_PREFIX)
        finally:
            launcher.close()

    def test_close_removes_the_session_containers(
        self, worker_image: str, docker_client: Any, store: LocalStore
    ) -> None:
        session = _session()
        launcher = DockerLauncher(worker_image, session_id=session, client=docker_client)
        handles = launcher.launch([_spec(store, 600)])
        assert all(isinstance(h, TaskHandle) for h in handles)
        labelled = docker_client.containers.list(all=True, filters={"label": f"{LABEL_SESSION}={session}"})
        assert len(labelled) == 1
        launcher.close()
        assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_SESSION}={session}"})
        assert launcher.poll([h for h in handles if isinstance(h, TaskHandle)])[0].phase is TaskPhase.STOPPED

    def test_missing_image_is_a_final_launch_failure(
        self, docker_client: Any, store: LocalStore
    ) -> None:
        launcher = DockerLauncher("starburst-missing/worker:nope", client=docker_client)
        (failure,) = launcher.launch([_spec(store)])
        assert isinstance(failure, LaunchFailure)
        assert not failure.retryable
        assert "starburst build" in failure.reason


def test_from_config_needs_no_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    config = load_config({"backend": "docker", "image": "x:1", "memory": "1GB", "cpu": 2}, env={})
    launcher = DockerLauncher.from_config(config, "s1", (tmp_path / "s").as_uri())
    assert (launcher.image, launcher.memory, launcher.cpu) == ("x:1", 1024, 2.0)
    launcher.close()
    store = LocalStore(tmp_path / "s")
    (failure,) = launcher.launch([_spec(store)])
    assert isinstance(failure, LaunchFailure) and not failure.retryable
    assert "no Docker daemon" in failure.reason and "dockerd" in failure.reason


def test_no_image_is_a_clear_failure(tmp_path: Path) -> None:
    launcher = DockerLauncher(None)
    (failure,) = launcher.launch([_spec(LocalStore(tmp_path / "s"))])
    assert isinstance(failure, LaunchFailure) and "starburst build" in failure.reason


def test_ecr_images_are_pulled_with_the_ecr_token(aws: Any) -> None:
    from starburst_executor.launch.docker import _ecr_auth

    uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:py3.11-x86_64-abc"
    assert _ecr_auth(uri) == {"username": "AWS", "password": "123456789012-auth-token"}
    assert _ecr_auth("127.0.0.1:5000/starburst-worker:x") is None
