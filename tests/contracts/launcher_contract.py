"""The behaviour every Launcher promises.  A backend's test module subclasses
``LauncherContract`` and provides two fixtures: ``launcher`` (a fresh launcher, closed by the
fixture) and ``store`` (an empty ObjectStore whose ``url`` that launcher's workers can open)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

from starburst_executor import _keys, payload
from starburst_executor.launch.base import (
    LaunchFailure,
    Launcher,
    TaskHandle,
    TaskPhase,
    TaskState,
    WorkerSpec,
)
from starburst_executor.storage import ObjectStore

from ._wire import SECRET_ENV, assign, put_batch, read_part

_ids = itertools.count()


def _spec(store: ObjectStore, idle: float = 0.5) -> WorkerSpec:
    worker_id = f"wc{next(_ids):04d}"
    return WorkerSpec(worker_id, {
        _keys.ENV_STORE_URL: store.url,
        _keys.ENV_WORKER_ID: worker_id,
        _keys.ENV_IDLE_TIMEOUT: str(idle),
        _keys.ENV_FLUSH_INTERVAL: "0.05",
        _keys.ENV_POLL_MAX: "0.05",
        **SECRET_ENV,
    })


def _launch_one(launcher: Launcher, spec: WorkerSpec) -> TaskHandle:
    (result,) = launcher.launch([spec])
    assert isinstance(result, TaskHandle), result
    assert result.worker_id == spec.worker_id
    return result


def _wait_stopped(launcher: Launcher, handles: Sequence[TaskHandle], timeout: float = 60
                  ) -> list[TaskState]:
    deadline = time.monotonic() + timeout
    while True:
        states = launcher.poll(handles)
        if all(s.phase is TaskPhase.STOPPED for s in states):
            return states
        assert time.monotonic() < deadline, f"workers still running: {states}"
        time.sleep(0.1)


class LauncherContract:
    # How long a worker may take to start on this backend (a container is slower).
    startup_seconds = 30.0

    def test_is_a_launcher(self, launcher: Launcher) -> None:
        assert isinstance(launcher, Launcher)
        low, high = launcher.poll_interval
        assert 0 < low <= high

    def test_idle_worker_exits_zero_by_itself(self, launcher: Launcher, store: ObjectStore
                                              ) -> None:
        handle = _launch_one(launcher, _spec(store, idle=0.3))
        (state,) = _wait_stopped(launcher, [handle], self.startup_seconds + 30)
        assert state.exit_code == 0
        assert state.handle == handle
        assert "idle" in launcher.log_tail(handle)

    def test_worker_runs_a_batch(self, launcher: Launcher, store: ObjectStore) -> None:
        put_batch(store, "b1", pow, [(0, (3, 4))])
        spec = _spec(store, idle=0.3)
        assign(store, spec.worker_id, 0, "b1")
        handle = _launch_one(launcher, spec)
        _wait_stopped(launcher, [handle], self.startup_seconds + 30)
        # Results may come in several parts, as the worker flushes them.
        records = [r for key in store.list(_keys.RESULTS_PREFIX)
                   for r in read_part(store, key).records]
        assert [payload.decode_result(r) for r in records] == [(True, 81)]

    def test_stop_ends_a_running_worker(self, launcher: Launcher, store: ObjectStore) -> None:
        handle = _launch_one(launcher, _spec(store, idle=600))
        deadline = time.monotonic() + self.startup_seconds
        while launcher.poll([handle])[0].phase is TaskPhase.PENDING:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        launcher.stop([handle], "test says stop")
        (state,) = _wait_stopped(launcher, [handle], 30)
        assert state.exit_code != 0
        assert state.stopped_reason
        launcher.stop([handle], "stopping twice is fine")

    def test_close_stops_every_worker(self, launcher: Launcher, store: ObjectStore) -> None:
        handles = [h for h in launcher.launch([_spec(store, 600), _spec(store, 600)])
                   if isinstance(h, TaskHandle)]
        assert len(handles) == 2
        launcher.close()
        states = _wait_stopped(launcher, handles, 30)
        assert all(s.phase is TaskPhase.STOPPED for s in states)

    def test_capacity_is_at_most_wanted(self, launcher: Launcher) -> None:
        assert 1 <= launcher.capacity(3) <= 3

    def test_stats_count_tasks(self, launcher: Launcher, store: ObjectStore) -> None:
        before = launcher.stats.tasks_started
        results = launcher.launch([_spec(store, 0.2)])
        assert not isinstance(results[0], LaunchFailure)
        assert launcher.stats.tasks_started == before + 1
        _wait_stopped(launcher, [r for r in results if isinstance(r, TaskHandle)],
                      self.startup_seconds + 30)
