from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from starburst_executor.launch.base import TaskHandle, TaskPhase, WorkerSpec
from starburst_executor.launch.local import LocalLauncher
from starburst_executor.storage.local import LocalStore

from ..contracts.launcher_contract import LauncherContract, _spec, _wait_stopped


class TestLocalLauncher(LauncherContract):
    @pytest.fixture
    def launcher(self) -> Iterator[LocalLauncher]:
        launcher = LocalLauncher()
        yield launcher
        launcher.close()

    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        return LocalStore(tmp_path / "session")

    def test_killed_worker_reports_its_signal(self, launcher: LocalLauncher, store: LocalStore
                                              ) -> None:
        (handle,) = launcher.launch([_spec(store, idle=600)])
        assert isinstance(handle, TaskHandle)
        os.kill(int(handle.task_id), signal.SIGKILL)
        (state,) = _wait_stopped(launcher, [handle], 30)
        assert state.exit_code == -9
        assert "SIGKILL" in (state.stopped_reason or "")

    def test_missing_python_is_a_clear_failure(self, store: LocalStore) -> None:
        launcher = LocalLauncher(python="/nonexistent/python")
        try:
            (failure,) = launcher.launch([_spec(store)])
            assert not isinstance(failure, TaskHandle)
            assert not failure.retryable and "/nonexistent/python" in failure.reason
        finally:
            launcher.close()

    def test_logs_are_removed_on_close(self, store: LocalStore) -> None:
        launcher = LocalLauncher()
        log_dir = launcher.log_dir
        (handle,) = launcher.launch([WorkerSpec("w1", _spec(store, 0.1).env)])
        assert isinstance(handle, TaskHandle)
        _wait_stopped(launcher, [handle])
        launcher.close()
        assert not log_dir.exists()
        assert launcher.poll([handle])[0].phase is TaskPhase.STOPPED
