"""Fault tests on the local backend (issue 11): a bad object in any folder of a session, a
zombie worker, a killed worker.  Each fault fails or retries its own batch only, with an
``IntegrityError`` naming the key; the executor keeps working.  Faults are armed on events (a
call has started, a worker has exited, an assignment was written), never on timers.

The Fargate counterparts are in ``test_faults_fargate.py``.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from starburst_executor import FargateExecutor
from starburst_executor.errors import IntegrityError

WAIT = 60.0


def held(x: int, gate: str) -> int:
    """x * 10 once ``<gate>/release`` exists; says it started in ``<gate>/started-<x>-<pid>``."""
    import os as _os
    import time as _time
    from pathlib import Path as _Path

    where = _Path(gate)
    (where / f"started-{x}-{_os.getpid()}").write_text("")
    deadline = _time.monotonic() + 90
    while not (where / "release").exists() and _time.monotonic() < deadline:
        _time.sleep(0.02)
    return x * 10


def wait_for(what: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < deadline, "the awaited event never happened"
        time.sleep(0.02)


def started_pids(gate: Path, x: int) -> list[int]:
    return [int(p.name.rsplit("-", 1)[1]) for p in gate.glob(f"started-{x}-*")]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gate"
    path.mkdir()
    yield path
    (path / "release").touch()  # whatever happened, let held calls end


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[Callable[..., tuple[FargateExecutor, Path]]]:
    """executor(**settings) -> (a local executor storing below tmp_path, its session folder)."""
    made: list[FargateExecutor] = []

    def make(**settings: Any) -> tuple[FargateExecutor, Path]:
        root = tmp_path / "store"
        ex = FargateExecutor(backend="local", store=root.as_uri(), **settings)
        made.append(ex)
        assert ex.submit(pow, 2, 3).result(timeout=WAIT) == 8  # batch b000000000, worker w00000
        (session,) = (root / "sessions").iterdir()
        return ex, session

    yield make
    for ex in made:
        ex.shutdown(wait=True, cancel_futures=True)


def _corrupt(data: bytes, how: str, other: bytes) -> bytes:
    if how == "planted":  # something else entirely, pickled by someone without the secret
        return b"SBX1" + pickle.dumps(("planted", os.system))
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "tampered":  # one byte changed inside the body
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]
    assert how == "replayed"  # a genuine object of the session, copied under another key
    return other


HOWS = ["planted", "truncated", "tampered", "replayed"]


@pytest.mark.parametrize("how", HOWS)
def test_a_bad_result_part_fails_only_its_batch(executor: Any, gate: Path, how: str) -> None:
    ex, session = executor(max_workers=1, max_retries=0)
    genuine = (session / "results" / "b000000000.1.00000").read_bytes()
    key = "results/b000000001.1.00000"
    # Planted before the batch exists; the worker that will write this part is held.
    (session / key).write_bytes(_corrupt(genuine, how, genuine))
    future = ex.submit(held, 1, str(gate))
    error = future.exception(timeout=WAIT)
    assert isinstance(error, IntegrityError), repr(error)
    assert error.key == key and key in str(error)
    (gate / "release").touch()
    assert ex.submit(pow, 3, 2).result(timeout=WAIT) == 9
    assert list(ex.map(pow, [2, 3], [2, 2])) == [4, 9]


def test_a_bad_result_part_is_retried_when_retries_are_left(executor: Any, gate: Path) -> None:
    ex, session = executor(max_workers=1, max_retries=1)
    (session / "results" / "b000000001.1.00000").write_bytes(b"SBX1 planted")
    future = ex.submit(held, 1, str(gate))
    # The retry is written as the worker's next assignment (seq 0 was pow, 1 the first try).
    wait_for(lambda: (session / "assign" / "w00000" / "000002").exists())
    (gate / "release").touch()
    assert future.result(timeout=WAIT) == 10
    assert future.metadata.attempts == 2


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("folder", ["functions", "batches"])
def test_a_bad_input_object_fails_only_its_batch(executor: Any, gate: Path, folder: str,
                                                 how: str) -> None:
    ex, session = executor(max_workers=1, max_retries=1)
    before = {p.name for p in (session / folder).iterdir()}
    future = ex.submit(held, 1, str(gate))
    (pid,) = wait_for(lambda: started_pids(gate, 1))  # its worker has read both objects
    (name,) = {p.name for p in (session / folder).iterdir()} - before
    (other,) = before  # pow's function, or batch b000000000
    target = session / folder / name
    target.write_bytes(_corrupt(target.read_bytes(), how, (session / folder / other).read_bytes()))
    os.kill(pid, signal.SIGKILL)  # the retry, on a new worker, reads the bad object
    error = future.exception(timeout=WAIT)
    assert isinstance(error, IntegrityError), repr(error)
    assert error.key == f"{folder}/{name}"
    (gate / "release").touch()
    # The executor works on, the same function included (sent anew after the failure).
    assert ex.submit(held, 2, str(gate)).result(timeout=WAIT) == 20
    assert ex.submit(pow, 3, 2).result(timeout=WAIT) == 9


@pytest.mark.parametrize("how", ["planted", "replayed"])
def test_a_bad_assignment_ends_its_worker_and_the_batch_is_retried(
    executor: Any, gate: Path, how: str
) -> None:
    ex, session = executor(max_workers=1, max_retries=1)
    future = ex.submit(held, 1, str(gate))
    (pid,) = wait_for(lambda: started_pids(gate, 1))
    assign = session / "assign" / "w00000"
    # A replayed genuine assignment (seq 0: batch b000000000) would run that batch again.
    bad = (assign / "000000").read_bytes() if how == "replayed" else b'{"batch": "b000000000"}'
    (assign / "000002").write_bytes(bad)
    (gate / "release").touch()
    assert future.result(timeout=WAIT) == 10
    wait_for(lambda: gone(pid))  # it read the bad assignment and refused it
    after = ex.submit(pow, 3, 2)  # assigned to the dead worker first, then retried
    assert after.result(timeout=WAIT) == 9
    assert after.metadata.attempts == 2
    assert not (session / "results" / "b000000000.2.00000").exists()  # nothing ran again


def test_a_zombie_worker_writing_after_its_batch_was_retried_elsewhere(
    executor: Any, gate: Path
) -> None:
    ex, session = executor(max_workers=2, max_retries=2)
    settled: list[int] = []
    futures = [ex.submit(held, x, str(gate)) for x in range(4)]
    for f in futures:
        f.add_done_callback(lambda f: settled.append(f.result()))
    (pid,) = wait_for(lambda: started_pids(gate, 0))
    # A clone of that worker, with its environment: it runs the same attempt on its own.
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    env["STARBURST_IDLE_TIMEOUT"] = "0.5"
    # Workers claim an attempt before they start it, so a clone could not run it: remove the
    # claims made so far, as if the clone had made them (a worker the client takes for lost).
    for claim in (session / "claims").iterdir():
        claim.unlink()
    zombie = subprocess.Popen([sys.executable, "-m", "starburst_executor.worker"], env=env,
                              stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(started_pids(gate, 0)) == 2)  # the zombie runs the first call
        os.kill(pid, signal.SIGKILL)  # the original dies: its batch is retried elsewhere
        wait_for(lambda: len(started_pids(gate, 0)) == 3)  # the retry runs on a new worker
        (gate / "release").touch()  # now the zombie and the retry both write every result
        assert [f.result(timeout=WAIT) for f in futures] == [0, 10, 20, 30]
        _, err = zombie.communicate(timeout=WAIT)
    finally:
        if zombie.poll() is None:
            zombie.kill()
            zombie.wait(timeout=10)
    assert b"attempt 1" in err and zombie.returncode == 0
    wait_for(lambda: len(settled) == 4)
    assert sorted(settled) == [0, 10, 20, 30]  # each future settled once
    assert ex.submit(pow, 3, 2).result(timeout=WAIT) == 9
