"""Workers as local subprocesses: the ``local`` backend, same pipeline as Fargate."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .. import _keys, _threads
from ..config import Config
from .._stats import RequestStats
from .base import WORKER_COMMAND, LaunchFailure, TaskHandle, TaskPhase, TaskState, WorkerSpec

__all__ = ["LocalLauncher"]

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


class _Process:
    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path, log_file: IO[bytes]):
        self.popen = popen
        self.log_path = log_path
        self.log_file = log_file
        self.started_at = time.time()
        self.stopped_at: float | None = None
        self.stop_reason: str | None = None


class LocalLauncher:
    """Runs each worker as ``python -m starburst_executor.worker`` on this machine.

    Workers run in their own session, so a Ctrl-C at the terminal reaches the client only,
    which then stops them; they also exit by themselves if the client dies.  Their stdout and
    stderr go to a log file per worker (see :meth:`log_tail`); the calls' output reaches the
    client with their results (``forward_output``), as from any other backend.
    """

    poll_interval = (0.002, 0.05)  # a poll costs no request, but client CPU the workers share

    def __init__(self, log_dir: str | os.PathLike[str] | None = None, python: str = sys.executable,
                 cpu_share: int | None = None):
        self._own_log_dir = log_dir is None
        # Each worker's share of the cores, for its BLAS/OpenMP thread pools (see _threads).
        self.cpu_share = cpu_share
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="starburst-logs-"))
        self.python = python
        self.stats = RequestStats()
        self._procs: dict[str, _Process] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config, session_id: str, store_url: str) -> LocalLauncher:
        workers = config.max_workers or os.cpu_count() or 1  # the executor's default too
        return cls(cpu_share=max(1, _threads.cpu_share({}) // workers))

    def launch(self, specs: Sequence[WorkerSpec]) -> list[TaskHandle | LaunchFailure]:
        out: list[TaskHandle | LaunchFailure] = []
        for spec in specs:
            env = dict(os.environ)
            env.update(spec.env)
            env[_keys.ENV_PARENT_PID] = str(os.getpid())
            if self.cpu_share is not None:
                env[_threads.ENV_CPU_SHARE] = str(self.cpu_share)
            # The worker must import this very copy of the package, installed or not.
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p
            )
            log_path = self.log_dir / f"{spec.worker_id}.log"
            log_file = open(log_path, "wb")  # noqa: SIM115 - closed when the worker is reaped
            try:
                popen = subprocess.Popen(
                    [self.python, *WORKER_COMMAND[1:]],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    start_new_session=True,
                )
            except OSError as exc:
                log_file.close()
                out.append(LaunchFailure(
                    spec.worker_id, f"cannot start {self.python}: {exc}", retryable=False))
                continue
            with self._lock:
                self._procs[str(popen.pid)] = _Process(popen, log_path, log_file)
            self.stats.count("spawn")
            self.stats.tasks_started += 1
            out.append(TaskHandle(spec.worker_id, str(popen.pid)))
        return out

    def poll(self, handles: Sequence[TaskHandle]) -> list[TaskState]:
        return [self._state(h) for h in handles]

    def _state(self, handle: TaskHandle) -> TaskState:
        proc = self._procs[handle.task_id]
        code = proc.popen.poll()
        if code is None:
            return TaskState(handle, TaskPhase.RUNNING, started_at=proc.started_at)
        if proc.stopped_at is None:
            proc.stopped_at = time.time()
            proc.log_file.close()
        if proc.stop_reason:
            reason = proc.stop_reason
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            reason = f"killed by signal {name}" + (
                " (SIGKILL: out of memory, or killed from outside)" if code == -9 else "")
        else:
            reason = f"exited with code {code}"
        return TaskState(handle, TaskPhase.STOPPED, exit_code=code, stopped_reason=reason,
                         started_at=proc.started_at, stopped_at=proc.stopped_at)

    def stop(self, handles: Sequence[TaskHandle], reason: str) -> None:
        procs = [self._procs[h.task_id] for h in handles if h.task_id in self._procs]
        live = [p for p in procs if p.popen.poll() is None]
        for proc in live:
            proc.stop_reason = f"stopped: {reason}"
            proc.popen.terminate()
        deadline = time.monotonic() + 2.0
        for proc in live:
            try:
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        self.stats.count("stop", len(live))

    def prepare(self) -> None:
        pass  # nothing to look up

    def capacity(self, wanted: int) -> int:
        return wanted

    def log_tail(self, handle: TaskHandle, lines: int = 20) -> str:
        proc = self._procs.get(handle.task_id)
        if proc is None:
            return ""
        try:
            with open(proc.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        with self._lock:
            procs = list(self._procs.items())
        self.stop([TaskHandle("", pid) for pid, _ in procs], "executor closed")
        for _, proc in procs:
            proc.log_file.close()
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)
