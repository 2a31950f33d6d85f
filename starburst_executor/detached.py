"""``FargateExecutor(detached=True)``: submit, close the laptop, ``attach`` later.

Every call is pickled, batched and uploaded before ``submit``/``map`` returns it, with one
``queue/<batch id>`` entry per batch (see ``_detached``); workers are launched with
``STARBURST_SERVE_QUEUE=1`` and need no client: they claim queued batches atomically, keep a
lease on the one they run, stop at ``max_cost`` or ``deadline`` and exit once the queue is empty
for ``idle_timeout``.  The executor's futures are resolved by a :class:`~.session.Session`
that reads the results, exactly as ``attach`` does in another process.

Leaving the with-block and ``shutdown()`` wait for the results (as the stdlib does) but never
stop the workers; interpreter exit leaves them running.  Ctrl-C in the with-block asks whether
to cancel them (at a terminal) or prints how to attach and cancel.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import wait as wait_all
from typing import Any, Literal

from . import _auth, _detached, _keys
from ._future import CallMetadata, StarburstFuture
from .config import Config
from .engine import WorkItem
from .engine.batches import Batcher
from .errors import ConfigError, LaunchError
from .executor import FargateExecutor
from .launch.base import TaskHandle, WorkerSpec
from .session import Session, save_session
from .storage import open_store

__all__ = ["DetachedExecutor", "worker_price"]


def worker_price(config: Config) -> tuple[float, float]:
    """(USD per worker-hour, minimum billed seconds) of one worker of ``config``."""
    if config.backend != "fargate":
        return 0.0, 0.0
    from . import cost

    hourly = cost.task_cost(config.cpu, config.memory, 3600.0, spot=config.spot,
                            architecture=config.architecture, region=config.region,
                            ephemeral_storage_gib=config.ephemeral_storage).total
    return hourly, float(cost.MINIMUM_SECONDS)


class DetachedExecutor(FargateExecutor):
    """A :class:`FargateExecutor` whose workers outlive it (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._initializer is not None or self._config.max_tasks_per_child is not None:
            raise ConfigError(
                "detached=True does not take initializer= or max_tasks_per_child= yet: the "
                "workers of a detached session claim work without the client; set up state "
                "inside the function (e.g. a module-level cache) instead")
        self._secret = _auth.new_secret()
        self._store = open_store(self._backend.store_url)
        self._batcher = Batcher(self._intake, self._store, self._policy, secret=self._secret,
                                max_size=self._config.max_result_size)
        self._submit_lock = threading.Lock()
        self._session: Session | None = None
        self._started: list[TaskHandle] = []
        self._told = False

    @property
    def session(self) -> Session | None:
        """The session this executor submits to (``None`` before the first submit)."""
        return self._session

    def _submit_many(self, fn: Callable[..., Any],
                     calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
                     chunksize: int | None,
                     shared: threading.Condition | None = None) -> list[Any]:
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        if chunksize is None and len(calls) > 1:
            # No duration is measured before everything is uploaded, so a map is cut into
            # about four batches per worker: few objects and requests, yet a lost batch or a
            # slow one holds only a quarter of a worker's share.
            chunksize = math.ceil(len(calls) / (4 * self._max_workers))
        with self._submit_lock:
            if self._intake.shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            session = self._open_session()
            now = time.time()
            futures: list[StarburstFuture[Any]] = []
            with self._intake.lock:
                first = self._intake.next_id
                self._intake.next_id += len(calls)
                for item_id, (args, kwargs) in enumerate(calls, first):
                    future = StarburstFuture.sharing(shared, CallMetadata(item_id, now))
                    self._intake.pending.append(
                        WorkItem(item_id, future, fn, args, kwargs, chunksize))
                    futures.append(future)
            batches = self._upload(session)
            self._launch(batches)
        return futures

    # -- the session ------------------------------------------------------------------------

    def _open_session(self) -> Session:
        if self._session is not None:
            return self._session
        config = self._config
        hourly, minimum = worker_price(config)
        now = time.time()
        doc = _detached.SessionDoc(
            self._session_id, config.backend, now, config.max_cost,
            None if config.deadline is None else now + config.deadline, config.max_retries,
            config.lease_timeout, hourly, minimum, self._max_workers,
            {"region": config.region, "cluster": config.cluster})
        doc.write(self._store, self._secret)
        save_session(self._session_id, self._secret,
                     {"store_url": self._store.url, "backend": config.backend,
                      "region": config.region, "cluster": config.cluster, "created": now})
        self._session = Session(self._session_id, self._store, self._secret,
                                {"region": config.region, "cluster": config.cluster})
        if config.progress:
            print(f"starburst: detached session {self._session_id}", file=sys.stderr)
        return self._session

    def _upload(self, session: Session) -> int:
        """Batch and upload every pending call, queue each batch; return how many."""
        count = 0
        while True:
            batch = self._batcher.form(self._max_workers)
            if batch is None:
                return count
            key = _detached.queue_key(batch.batch_id)
            _detached.write_signed(self._store, key, {"items": sorted(batch.futures)},
                                   self._secret)
            session.adopt(batch.batch_id, batch.futures)
            count += 1

    def _launch(self, batches: int) -> None:
        """Start workers for ``batches`` new batches, up to ``max_workers`` alive at once and
        what ``max_cost`` affords."""
        if not batches:
            return
        assert self._session is not None
        records = {r.worker_id: r for r in self._session._workers()}
        alive = sum(1 for h in self._started
                    if h.worker_id not in records or records[h.worker_id].exited is None)
        wanted = min(self._max_workers - alive, batches)
        doc = self._session.doc
        if doc.max_cost is not None and doc.hourly > 0:
            spent = _detached.spend(doc, list(records.values()))
            least = doc.hourly * max(doc.minimum_seconds, 1.0) / 3600.0
            wanted = min(wanted, math.floor((doc.max_cost - spent) / least))
        if wanted <= 0:
            return
        ids = [f"w{len(self._started) + i:05d}" for i in range(wanted)]
        specs = [WorkerSpec(worker_id, self._env(worker_id)) for worker_id in ids]
        results = self._backend.launcher.launch(specs)
        started = [r for r in results if isinstance(r, TaskHandle)]
        self._started.extend(started)
        if not started and not alive:
            failure = results[0]
            raise LaunchError(f"no worker of detached session {self._session_id} could be "
                              f"started: {getattr(failure, 'reason', failure)}; the calls are "
                              "queued: attach() later once workers can start")

    def _env(self, worker_id: str) -> dict[str, str]:
        poll_min, poll_max = self._backend.launcher.poll_interval
        return {
            _keys.ENV_STORE_URL: self._store.url,
            _keys.ENV_WORKER_ID: worker_id,
            _keys.ENV_IDLE_TIMEOUT: f"{self._config.idle_timeout:g}",
            _keys.ENV_FLUSH_INTERVAL: f"{min(2.0, max(0.1, poll_max / 2)):g}",
            _keys.ENV_POLL_MIN: f"{poll_min:g}",
            _keys.ENV_POLL_MAX: f"{poll_max:g}",
            _keys.ENV_CAPTURE_OUTPUT: "1" if self._config.forward_output else "0",
            _detached.ENV_DETACHED: "1",
            _auth.ENV_SECRET: _auth.secret_to_env(self._secret),
        }

    # -- endings: the workers go on ---------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; with ``wait``, wait for every result.  The workers are never
        stopped here (``attach(session_id).cancel()`` does); ``cancel_futures`` only stops
        waiting."""
        with self._submit_lock:
            self._intake.shutdown = True
        session = self._session
        if session is None:
            return
        if wait and not cancel_futures:
            wait_all(session.futures())
        session.close()

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> Literal[False]:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._interrupted()
            return False
        try:
            self.shutdown(wait=exc_type is None)
        except KeyboardInterrupt:
            self._interrupted()
            raise
        return False

    def _interrupted(self) -> None:
        """Ctrl-C: at a terminal, ask whether to cancel the workers; else detach and say how
        to come back."""
        with self._submit_lock:
            self._intake.shutdown = True
        if self._session is None:
            return
        if sys.stdin is not None and sys.stdin.isatty():
            try:
                answer = input(f"\nstarburst: cancel detached session {self._session_id} "
                               "(stop its workers)? [y/N] ")
            except (EOFError, KeyboardInterrupt):
                answer = ""
            if answer.strip().lower() in ("y", "yes"):
                self._session.cancel("cancelled with Ctrl-C")
                self._session.close()
                return
        self._tell()
        self._session.close()

    def _terminate(self, reason: str) -> None:
        # Interpreter exit (or an executor dropped): detach, never stop the workers.
        with self._submit_lock:
            self._intake.shutdown = True
        if self._session is not None:
            if any(not f.done() for f in self._session.futures()):
                self._tell()
            self._session.close()

    def _tell(self) -> None:
        if self._told:
            return
        self._told = True
        sid = self._session_id
        print(f"starburst: detached session {sid} keeps running. Collect its results with "
              f"`starburst collect {sid} -o results.pkl` or starburst_executor.attach({sid!r}); "
              f"stop it with `starburst cancel {sid}`.", file=sys.stderr)

    def __repr__(self) -> str:
        return (f"<FargateExecutor detached backend={self._config.backend} max_workers="
                f"{self._max_workers} session={self._session_id}>")
