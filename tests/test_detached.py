"""Detached sessions on the local backend: the client can die, the workers go on, ``attach``
from another process collects every result; max_cost and cancel() stop the workers."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from starburst_executor import FargateExecutor, Session, SessionStopped, attach, detached
from starburst_executor.errors import ConfigError
from starburst_executor.session import sessions_dir

CLIENT = textwrap.dedent("""
    import sys, time
    from starburst_executor import FargateExecutor

    def work(x):
        time.sleep(0.002)
        return x * 3 + 1

    ex = FargateExecutor(max_workers=3, backend=sys.argv[1], detached=True, max_cost=5,
                         idle_timeout=3, lease_timeout=3, **eval(sys.argv[2]))
    results = ex.map(work, range(2000), chunksize=50)
    print("SESSION", ex.session_id, flush=True)
    next(results)
    print("FIRST", flush=True)
    time.sleep(600)  # killed here
""")


def run_and_kill_client(tmp_path: Path, backend: str = "local",
                        settings: dict[str, Any] | None = None) -> str:
    """Start a detached map of 2,000 calls in a client process, SIGKILL it after its first
    result; return the session id."""
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    proc = subprocess.Popen([sys.executable, str(script), backend, repr(settings or {})],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        session_id = ""
        for line in proc.stdout:  # the client's own lines: event-armed, no timer
            if line.startswith("SESSION"):
                session_id = line.split()[1]
            if line.startswith("FIRST"):
                break
        assert session_id, "the client printed no session id"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return session_id


def wait_until(condition: Any, timeout: float = 60.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def collect_in_new_process(session_id: str) -> list[Any]:
    code = ("import pickle, sys; from starburst_executor import attach; "
            f"s = attach({session_id!r}); "
            "sys.stdout.buffer.write(pickle.dumps(list(s.results(timeout=100))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=110,
                         check=True)
    import pickle

    result: list[Any] = pickle.loads(out.stdout)
    return result


def test_detached_map_survives_a_killed_client(tmp_path: Path) -> None:
    session_id = run_and_kill_client(tmp_path)
    assert collect_in_new_process(session_id) == [x * 3 + 1 for x in range(2000)]
    session = attach(session_id)
    try:
        # The workers exit once the queue is drained (idle_timeout=3).
        wait_until(lambda: session.status().workers == 0, what="the workers to exit")
        status = session.status()
        assert (status.calls, status.done, status.failed, status.pending) == (2000, 2000, 0, 0)
        assert status.halted is None
    finally:
        session.cleanup()
    assert not (sessions_dir() / f"{session_id}.key").exists()


def boom(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


def test_attach_gives_futures_exceptions_and_completion_order() -> None:
    ex = FargateExecutor(max_workers=2, backend="local", detached=True, max_cost=1,
                         idle_timeout=2, lease_timeout=2)
    futures = [ex.submit(boom, x) for x in range(6)]
    assert isinstance(ex, detached.DetachedExecutor)
    session = attach(ex.session_id)
    try:
        attached = session.futures()
        assert len(attached) == 6
        assert sorted(f.result(timeout=60) for f in session.as_completed(timeout=60)
                      if f.exception() is None) == [0, 1, 2, 4, 5]
        error = attached[3].exception(timeout=60)
        assert isinstance(error, ValueError) and "bad item 3" in str(error)
        assert "Traceback" in str(error.__cause__)  # the remote traceback
        assert isinstance(futures[3].exception(timeout=60), ValueError)
        assert futures[5].result(timeout=60) == 5
    finally:
        ex.shutdown()
        session.cleanup()


def test_secret_stays_out_of_the_store_and_is_private() -> None:
    ex = FargateExecutor(max_workers=1, backend="local", detached=True, deadline=60,
                         idle_timeout=1)
    try:
        assert ex.submit(pow, 2, 10).result(timeout=60) == 1024
        key = sessions_dir() / f"{ex.session_id}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(sessions_dir().stat().st_mode) == 0o700
        secret = key.read_text().strip().encode()
        session = ex.session
        assert session is not None
        root = Path(session.store.url.removeprefix("file://"))
        for path in root.rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), path
    finally:
        ex.shutdown()
        assert ex.session is not None
        ex.session.cleanup()


def test_detached_needs_a_bound() -> None:
    with pytest.raises(ConfigError, match="max_cost"):
        FargateExecutor(backend="local", detached=True)


def held(path: str, x: int) -> int:
    """Runs until ``path`` exists (never, in the tests that cancel)."""
    while not os.path.exists(path):
        time.sleep(0.05)
    return x


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Local workers cost $1 a second each here, billed by the second.
    monkeypatch.setattr(detached, "worker_price", lambda config: (3600.0, 0.0))
    yield


def test_max_cost_stops_the_workers(priced: None, tmp_path: Path) -> None:
    ex = FargateExecutor(max_workers=2, backend="local", detached=True, max_cost=2,
                         idle_timeout=30, lease_timeout=1)
    # Both workers hold a call that never returns: only the limit can stop them.
    futures = ex.map(held, [str(tmp_path / "never")] * 2 + [str(tmp_path)] * 20, range(22),
                     chunksize=1)
    session = attach(ex.session_id)
    try:
        wait_until(lambda: session.status().halted is not None, what="the cost limit")
        assert "max_cost" in str(session.status().halted)
        wait_until(lambda: session.status().workers == 0, what="the workers to stop")
        with pytest.raises(SessionStopped, match="max_cost"):
            list(futures)
        status = session.status()
        assert status.workers_started == 2
        # Billed past the limit by at most a lease refresh or so per worker (loose bound).
        assert 2 <= status.cost < 10
    finally:
        ex.shutdown(wait=False)
        session.cleanup()


def test_cancel_stops_every_worker(tmp_path: Path) -> None:
    ex = FargateExecutor(max_workers=2, backend="local", detached=True, max_cost=1,
                         idle_timeout=30, lease_timeout=30)
    futures = [ex.submit(held, str(tmp_path / "never"), x) for x in range(4)]
    session = attach(ex.session_id)
    try:
        wait_until(lambda: session.status().running > 0, what="a call to start")
        pids = [w.pid for w in session._workers()]
        session.cancel()
        wait_until(lambda: all(not _alive(pid) for pid in pids), what="the workers to die")
        for future in futures:
            assert isinstance(future.exception(timeout=60), SessionStopped)
        assert "cancelled" in str(session.status().halted)
    finally:
        ex.shutdown(wait=False)
        session.cleanup()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of this process counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def die_once(marker: str, x: int) -> int:
    if x == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 100


@pytest.mark.parametrize("idle_timeout, lease_timeout", [
    (10, 1),
    # Idle workers would leave after 0.3 s, long before the dead worker's 3 s lease runs out:
    # one of them stays on watch while a batch is unfinished, so the batch is not stranded.
    (0.3, 3),
])
def test_a_batch_whose_lease_runs_out_runs_again(tmp_path: Path, idle_timeout: float,
                                                 lease_timeout: float) -> None:
    marker = str(tmp_path / "died")
    ex = FargateExecutor(max_workers=2, backend="local", detached=True, max_cost=1,
                         idle_timeout=idle_timeout, lease_timeout=lease_timeout)
    try:
        results = list(ex.map(die_once, [marker] * 4, range(4), chunksize=1, timeout=90))
        assert results == [100, 101, 102, 103]
        assert os.path.exists(marker)
        assert ex.session is not None
        assert ex.session.futures()[1].metadata.attempts == 2
    finally:
        ex.shutdown()
        assert isinstance(ex.session, Session)
        ex.session.cleanup()


def test_cli_status_collect_and_cancel(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    from starburst_executor import cli_sessions

    ex = FargateExecutor(max_workers=2, backend="local", detached=True, max_cost=1,
                         idle_timeout=2)
    futures = [ex.submit(boom, x) for x in range(5)]
    ex.shutdown(wait=True)  # waits for the results, the workers go on until idle
    assert [f.exception() is None for f in futures] == [True, True, True, False, True]
    out = tmp_path / "results.pkl"
    args = ["collect", ex.session_id, "-o", str(out)]
    from starburst_executor.cli import main

    assert main(args) == 1  # one call failed
    import pickle

    values = pickle.loads(out.read_bytes())
    assert values[:3] == [0, 1, 2] and values[4] == 4 and isinstance(values[3], ValueError)
    assert main(args[:-1] + [str(tmp_path / "r.json"), "--format", "json"]) == 1
    import json

    assert json.loads((tmp_path / "r.json").read_text())[3] == {
        "error": "ValueError: bad item 3"}
    assert cli_sessions.print_detached(as_json=False)
    assert f"{ex.session_id}" in capsys.readouterr().out
    assert main(["cancel", ex.session_id]) == 0
    session = attach(ex.session_id)
    assert "starburst cancel" in str(session.status().halted)
    session.cleanup()


@pytest.mark.parametrize("extra", [{"initializer": print}, {"max_tasks_per_child": 2}])
def test_detached_refuses_what_its_workers_cannot_honour(extra: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="detached=True does not take"):
        FargateExecutor(max_workers=1, backend="local", detached=True, max_cost=1, **extra)


def test_a_detached_map_without_chunksize_is_cut_into_a_few_batches_per_worker() -> None:
    ex = FargateExecutor(max_workers=2, backend="local", detached=True, max_cost=1,
                         idle_timeout=2)
    try:
        assert list(ex.map(abs, range(-100, 0), timeout=90)) == list(range(100, 0, -1))
        assert ex.session is not None
        batches = {f.metadata.batch_id for f in ex.session.futures()}
        assert len(batches) == 8  # 4 per worker, not one per call
    finally:
        ex.shutdown()
        assert isinstance(ex.session, Session)
        ex.session.cleanup()
