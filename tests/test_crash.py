"""A worker that dies never hangs the executor: its batch is retried, then fails alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import pytest

from starburst_executor import FargateExecutor, WorkerLost


@pytest.fixture
def executor() -> Iterator[FargateExecutor]:
    ex = FargateExecutor(max_workers=2, backend="local", max_retries=1, idle_timeout=5)
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


def _die_once(marker: str, x: int) -> int:
    if x == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return x * 10


def _always_die(x: int) -> int:
    if x == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_worker_killed_once_is_retried_and_results_are_right(executor: FargateExecutor,
                                                             tmp_path: Path) -> None:
    marker = str(tmp_path / "died")
    results = list(executor.map(_die_once, [marker] * 8, range(8), chunksize=2, timeout=60))
    assert results == [x * 10 for x in range(8)]
    assert os.path.exists(marker)
    assert executor.usage().retries >= 1


def test_worker_that_always_dies_fails_only_its_batch(executor: FargateExecutor) -> None:
    futures = [executor.submit(_always_die, x) for x in range(10)]
    done, not_done = wait(futures, timeout=60)
    assert not not_done
    lost = [f for f in futures if isinstance(f.exception(), WorkerLost)]
    assert futures[5] in lost
    for future in futures:
        if future not in lost:
            assert future.result() == futures.index(future)
    error = futures[5].exception()
    assert isinstance(error, WorkerLost)
    assert error.exit_code == -9
    assert "SIGKILL" in str(error) and "max_retries=1" in str(error)
    assert error.attempts == 2
    assert error.batch_id == futures[5].metadata.batch_id
    # Only calls of the lost batch failed.
    assert {f.metadata.batch_id for f in lost} == {error.batch_id}
    # The executor is still usable.
    assert executor.submit(pow, 2, 5).result(timeout=60) == 32


def _write_stderr_and_exit(x: int) -> None:
    print("about to fail: disk on fire", file=sys.stderr, flush=True)
    os._exit(7)


def test_worker_lost_carries_exit_code_and_log_tail() -> None:
    with FargateExecutor(max_workers=1, backend="local", max_retries=0) as ex:
        future = ex.submit(_write_stderr_and_exit, 1)
        error = future.exception(timeout=60)
    assert isinstance(error, WorkerLost)
    assert error.exit_code == 7
    assert "disk on fire" in error.log_tail
    assert "disk on fire" in str(error)


def test_sys_exit_in_a_call_is_an_exception_not_a_crash() -> None:
    with FargateExecutor(max_workers=1, backend="local") as ex:
        future = ex.submit(sys.exit, 3)
        with pytest.raises(SystemExit):
            future.result(timeout=60)
        assert ex.submit(abs, -1).result(timeout=60) == 1


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                if "\nState:\tZ" in f.read():
                    continue
        except FileNotFoundError:
            continue
        alive.append(pid)
    return alive


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("how", ["ctrl-c in with-block", "ctrl-c outside", "killed client"])
def test_workers_stop_when_the_client_is_interrupted(tmp_path: Path, how: str) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = tmp_path / "client.py"
    body = textwrap.dedent(f"""
        import os, time
        from starburst_executor import FargateExecutor

        def work(x):
            open(os.path.join({str(pid_dir)!r}, str(os.getpid())), "w").close()
            time.sleep(600)

        ex = FargateExecutor(max_workers=2, backend="local")
        """)
    if how == "ctrl-c in with-block":
        body += "with ex:\n    list(ex.map(work, range(4)))\n"
    else:
        body += "list(ex.map(work, range(4)))\n"
    script.write_text(body)
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=repo)
    client = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(list(pid_dir.iterdir())) < 2:
            assert time.monotonic() < deadline, "workers never started"
            assert client.poll() is None, client.stderr.read() if client.stderr else ""
            time.sleep(0.1)
        pids = [int(p.name) for p in pid_dir.iterdir()]
        client.send_signal(signal.SIGKILL if how == "killed client" else signal.SIGINT)
        client.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _pids_alive(pids):
            assert time.monotonic() < deadline, f"workers {pids} outlived the client ({how})"
            time.sleep(0.1)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


def test_batches_queued_behind_a_crash_are_not_blamed() -> None:
    # One worker with two batches assigned at a time: the one after the poison batch never
    # ran, so it is retried without using up its retries.
    with FargateExecutor(max_workers=1, backend="local", max_retries=0) as ex:
        futures = [ex.submit(_always_die, x) for x in range(8)]
        wait(futures, timeout=60)
    for x, future in enumerate(futures):
        if x == 5:
            assert isinstance(future.exception(timeout=0), WorkerLost)
        elif future.metadata.batch_id != futures[5].metadata.batch_id:
            assert future.result(timeout=0) == x


def test_workers_that_never_launch_end_in_a_clear_error(mocker: Any) -> None:
    from starburst_executor import LaunchError
    from starburst_executor.launch.base import LaunchFailure
    from starburst_executor.launch.local import LocalLauncher

    mocker.patch.object(LocalLauncher, "launch", lambda self, specs: [
        LaunchFailure(s.worker_id, "no capacity (injected)", retryable=True) for s in specs])
    with FargateExecutor(max_workers=2, backend="local", start_timeout=0.5) as ex:
        future = ex.submit(abs, -1)
        with pytest.raises(LaunchError, match="no worker could be started.*no capacity"):
            future.result(timeout=60)
