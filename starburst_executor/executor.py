"""``FargateExecutor``: a ``concurrent.futures.Executor`` whose workers run on AWS ECS Fargate.

It keeps the stdlib contract of ``ProcessPoolExecutor``.  Its differences, named:

* Calls travel in batches through an object store (S3, or a local directory); a worker that
  finishes a batch takes the next one, so a cold start is paid once per worker.
* ``map`` takes ``chunksize=None`` by default, meaning "sized automatically" (few large batches
  for quick calls, smaller ones as the work runs out so workers finish together).
* A call can be cancelled until a worker starts it: it stays in the client until a worker is
  ready for it, and a batch queued for a busy worker is revoked (an atomic claim decides)
  when one of its calls is cancelled.
* A worker that dies has its batch retried (``max_retries``); only then do that batch's
  futures fail, with :class:`~starburst_executor.errors.WorkerLost`.  The executor stays usable.
* An exception (or Ctrl-C) in the ``with`` block, and interpreter exit without ``shutdown()``,
  stop every worker at once instead of waiting for running calls: nothing keeps billing.
"""

from __future__ import annotations

import atexit
import collections
import inspect
import itertools
import os
import secrets
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any, Literal, TypeVar

from . import _gc
from ._future import CallMetadata, StarburstFuture
from ._progress import ProgressBar
from .config import Config, load_config
from .engine import Intake, Ledger, Manager, Settings, Usage, WorkItem
from .launch import open_backend
from .planner import BatchPolicy
from .storage import open_store

__all__ = ["FargateExecutor", "starburst_map", "starburst_cluster"]

T = TypeVar("T")

_live: weakref.WeakSet[FargateExecutor] = weakref.WeakSet()
_interpreter_exiting = False


def _at_exit() -> None:
    # Unlike the stdlib pools, unfinished work is not waited for: stopping the workers is what
    # keeps an abandoned executor from billing.  Use shutdown() or a with-block to wait.
    global _interpreter_exiting
    _interpreter_exiting = True
    for executor in list(_live):
        executor._terminate("the interpreter is exiting")


atexit.register(_at_exit)

_DEFAULT_WORKERS = {"fargate": 10, "docker": 4}
_OVERHEAD_SEED = {"local": 0.003, "docker": 0.03}


class FargateExecutor(Executor):
    """Run callables on AWS ECS Fargate (or locally) with the ``concurrent.futures`` API.

    Settings not given as arguments come from ``STARBURST_*`` environment variables, then from
    the config file written by ``starburst setup``, then defaults (see
    :class:`~starburst_executor.config.Config`).  No network call happens here: workers start
    at the first ``submit``.

    The first four arguments are ``ProcessPoolExecutor``'s, in its order.

    Args:
        max_workers: the most workers running at once (Fargate tasks, containers or
            processes).  Default: 10 on Fargate, the number of CPUs locally.
        mp_context: accepted for ``ProcessPoolExecutor`` compatibility; it has no effect
            (workers are Fargate tasks or fresh processes, never forked from this one).
        initializer: called as ``initializer(*initargs)`` once in each worker before its
            first call; the globals it assigns are seen by the calls, also for functions
            defined in ``__main__``.  If it raises, the executor is broken, as
            ``ProcessPoolExecutor``'s: unfinished futures fail with
            :class:`~starburst_executor.errors.InitializerFailed` and so do later submits.
        initargs: the arguments of ``initializer``, pickled once.
        max_tasks_per_child: a worker exits after this many calls and a fresh one (which runs
            the initializer again) takes over; batches are never larger.  Default: no limit.
        cpu: vCPUs per worker (Fargate: 0.25, 0.5, 1, 2, 4, 8 or 16).
        memory: memory per worker, e.g. ``"8GB"``, ``"512MiB"`` or a number of MiB.
        backend: ``"fargate"``, ``"local"`` (worker subprocesses here) or ``"docker"`` (the
            worker image run by the local Docker daemon).
        progress: show a tqdm progress bar of outstanding calls.
        **settings: any other field of :class:`~starburst_executor.config.Config`, e.g.
            ``region``, ``bucket``, ``image``, ``spot``, ``architecture``, ``max_retries``,
            ``idle_timeout``, ``store``.

    Raises:
        ConfigError: a setting is invalid or missing; the message names the fix.
    """

    def __new__(cls, *args: Any, **settings: Any) -> FargateExecutor:
        # detached=True (argument, STARBURST_DETACHED or config file): the workers outlive
        # this executor; see starburst_executor.detached.
        if cls is FargateExecutor and _wants_detached(settings):
            from .detached import DetachedExecutor

            cls = DetachedExecutor
        return super().__new__(cls)

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        *,
        max_tasks_per_child: int | None = None,
        cpu: float | None = None,
        memory: str | int | None = None,
        backend: str | None = None,
        progress: bool | None = None,
        **settings: Any,
    ) -> None:
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        config = load_config(
            {"max_workers": max_workers, "cpu": cpu, "memory": memory, "backend": backend,
             "progress": progress, "max_tasks_per_child": max_tasks_per_child, **settings}
        )
        del mp_context  # no effect: see the docstring
        self._initializer = None if initializer is None else (initializer, tuple(initargs))
        self._config = config
        self._max_workers = config.max_workers or _DEFAULT_WORKERS.get(
            config.backend, os.cpu_count() or 1)
        self._session_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        # No network here: with auto_build, the launcher builds the image at its first launch.
        self._backend = open_backend(config, self._session_id)
        self._intake = Intake(ProgressBar() if config.progress else None)
        self._manager: Manager | None = None
        self._announced = False
        # A first guess of the per-batch overhead, until the workers' own gaps measure it.
        self._policy = BatchPolicy(overhead_seconds=_OVERHEAD_SEED.get(config.backend, 0.15))
        _live.add(self)

    # -- public API -------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The resolved settings of this executor."""
        return self._config

    @property
    def session_id(self) -> str:
        """The id of this executor's session (its objects live under ``sessions/<id>``)."""
        return self._session_id

    @property
    def max_workers(self) -> int:
        return self._max_workers

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> StarburstFuture[T]:
        """Schedule ``fn(*args, **kwargs)``; return a :class:`StarburstFuture` for its result.

        Raises:
            RuntimeError: the executor was shut down.
            ExecutorBroken: the executor failed earlier (the message says why).
        """
        return self._submit_many(fn, [(args, kwargs)], None)[0]

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """Like the built-in ``map``, with calls run by the workers; results come in order.

        Args:
            fn: the callable, taking as many arguments as there are iterables.
            *iterables: zipped shortest-first; consumed at once (like the stdlib executors)
                unless ``buffersize`` is given.
            timeout: seconds from this call after which ``__next__`` raises ``TimeoutError``
                for a result not yet there.
            chunksize: calls per batch; ``None`` sizes batches automatically.
            buffersize: read the input lazily, with at most this many calls submitted and
                not yet yielded (Python 3.14's ``Executor.map(buffersize=)``, on every
                Python version), so an endless or huge generator can be mapped.
        """
        if chunksize is not None and chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None and (not isinstance(buffersize, int) or buffersize < 1):
            raise ValueError("buffersize must be None or > 0.")
        if self._config.progress and not self._announced:
            self._announced = True
            _announce_cost(self._config, self._max_workers)
        end_time = None if timeout is None else timeout + time.monotonic()
        zipped = zip(*iterables)
        first = zipped if buffersize is None else itertools.islice(zipped, buffersize)
        futures: collections.deque[StarburstFuture[T]] = collections.deque()
        # In slices, so that on a long input workers start on the first calls while the rest
        # are still being made into futures (as with the stdlib's map, an iterable that fails
        # midway leaves those submitted).  Large ones: a slice takes the lock the manager
        # needs for as long as it makes them (10,000: ~60 ms); smaller slices add contention.
        no_kwargs: dict[str, Any] = {}
        shared = threading.Condition()  # the futures' lock (see StarburstFuture.sharing)
        while calls := [(args, no_kwargs) for args in itertools.islice(first, _SUBMIT_SLICE)]:
            futures.extend(self._submit_many(fn, calls, chunksize, shared))
        executor_ref = weakref.ref(self)

        def result_iterator() -> Iterator[T]:
            try:
                while futures:
                    # Refill before waiting, as the stdlib does, so the buffer stays full while
                    # the caller consumes results; a weak reference lets an abandoned iterator
                    # not keep the executor alive.
                    executor = executor_ref() if buffersize is not None else None
                    if executor is not None:
                        more = next(zipped, None)
                        if more is not None:
                            futures.append(executor._submit_many(fn, [(more, {})], chunksize,
                                                                shared)[0])
                    del executor
                    remaining = None if end_time is None else end_time - time.monotonic()
                    yield _result_or_cancel(futures.popleft(), remaining)
            finally:
                for future in futures:
                    future.cancel()

        return result_iterator()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; stop the workers once the submitted work is done.

        Args:
            wait: block until all submitted work is done and every worker is stopped.
            cancel_futures: cancel every call no worker has started yet.
        """
        with self._intake.lock:
            self._intake.shutdown = True
            withdrawn = list(self._intake.pending) if cancel_futures else []
            if cancel_futures:
                self._intake.pending.clear()
                self._intake.cancel_queued = True  # the manager revokes queued batches
            manager = self._manager
        # Cancelled outside the lock: cancel() runs done-callbacks, which may call submit().
        cancelled = sum(1 for item in withdrawn if item.future.cancel())
        if self._intake.progress is not None and cancelled:
            self._intake.progress.done(cancelled)
        self._intake.wake()
        if manager is None:
            self._backend.launcher.close()
        elif wait:
            manager.join()

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> Literal[False]:
        if exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            # Ctrl-C or exit in the block: stop the workers now, so nothing keeps billing.
            self._terminate(f"{exc_type.__name__} in the with-block")
            return False
        # As the stdlib does, other exceptions wait for the submitted work: results saved by
        # done-callbacks are not lost.  Ctrl-C while waiting still stops everything.
        try:
            self.shutdown(wait=True)
        except BaseException as interrupt:
            self._terminate(f"{type(interrupt).__name__} while leaving the with-block")
            raise
        return False

    def usage(self) -> Usage:
        """What this executor did so far: requests, bytes, batches, retries, tasks."""
        manager = self._manager
        if manager is None:
            return Usage({}, 0, 0, 0, 0, 0, 0, 0.0)
        return manager.usage(self._intake.next_id)

    # -- internals --------------------------------------------------------------------------

    def _submit_many(
        self,
        fn: Callable[..., Any],
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
        chunksize: int | None,
        shared: threading.Condition | None = None,
    ) -> list[Any]:
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        now = time.time()
        intake = self._intake
        with intake.lock:
            if intake.broken:
                raise intake.broken_error()
            if intake.shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _interpreter_exiting:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            first = intake.next_id
            intake.next_id += len(calls)
            futures: list[Any] = []
            with _gc.paused(len(calls) > 1000):  # see _gc
                for item_id, (args, kwargs) in zip(itertools.count(first), calls):
                    future = StarburstFuture.sharing(shared, CallMetadata(item_id, now))
                    intake.pending.append(WorkItem(item_id, future, fn, args, kwargs, chunksize))
                    futures.append(future)
            if intake.progress is not None:
                intake.progress.add(len(calls))
            if self._manager is None:
                # Under the lock, so a concurrent shutdown() either sees this manager and
                # waits for it, or made this submit raise.
                self._start_manager()
        intake.wake()
        return futures

    def _start_manager(self) -> None:
        """Start the manager thread (the caller holds ``self._intake.lock``)."""
        backend = self._backend
        ledger = Ledger(_price_function(self._config), self._config.max_cost,
                        store_name=backend.store_name, launcher_name=backend.launcher_name,
                        launcher_stats=backend.launcher.stats)
        settings = Settings(self._session_id, self._max_workers, self._policy, self._config,
                            delete_session=backend.delete_session,
                            initializer=self._initializer,
                            launch_all=self._config.backend == "local")
        backend.launcher.prepare()  # its lookups overlap opening the store
        manager = Manager(self, self._intake, open_store(backend.store_url), backend.launcher,
                          ledger, settings)
        manager.start()
        self._manager = manager

    def _terminate(self, reason: str) -> None:
        """Cancel pending calls, fail running ones and stop every worker, now."""
        with self._intake.lock:
            self._intake.shutdown = True
            if self._intake.terminate_reason is None:
                self._intake.terminate_reason = reason
            manager = self._manager
        self._intake.wake()
        if manager is None:
            self._backend.launcher.close()
        else:
            manager.join(timeout=60)

    def __repr__(self) -> str:
        return (f"<FargateExecutor backend={self._config.backend} max_workers="
                f"{self._max_workers} session={self._session_id}>")


_SUBMIT_SLICE = 10_000  # calls map() submits at a time


def _wants_detached(settings: dict[str, Any]) -> bool:
    # max_cost given only so that the check of detached's own limits waits for __init__.
    return load_config({"detached": settings.get("detached"), "max_cost": 1.0}).detached



# ``__new__`` picks the detached class; the signature people and tools see is ``__init__``'s
# (ProcessPoolExecutor's positional order), not ``__new__``'s ``(*args, **settings)``.
setattr(FargateExecutor, "__signature__", inspect.signature(FargateExecutor.__init__).replace(
    parameters=list(inspect.signature(FargateExecutor.__init__).parameters.values())[1:]))

def _price_function(config: Config) -> Callable[[float], float] | None:
    """USD billed for one worker that ran some seconds, or ``None`` where nothing is billed."""
    if config.backend != "fargate":
        return None
    from . import cost

    def price(seconds: float) -> float:
        return cost.task_cost(
            config.cpu, config.memory, seconds, spot=config.spot,
            architecture=config.architecture, region=config.region,
            ephemeral_storage_gib=config.ephemeral_storage,
        ).total

    return price


def _announce_cost(config: Config, workers: int) -> None:
    """Print what the workers cost per hour, before work starts (``progress=True``)."""
    price = _price_function(config)
    if price is None:
        return
    hourly = price(3600.0) * workers
    limit = f"; max_cost ${config.max_cost:.2f}" if config.max_cost is not None else ""
    print(
        f"starburst: up to {workers} workers x {config.cpu:g} vCPU x {config.memory} MiB "
        f"({'Spot' if config.spot else 'on-demand'}, {config.architecture}, "
        f"{config.region or 'default region'}): about ${hourly:.2f} per hour of all workers, "
        f"at least ${price(0.0) * workers:.4f} (one minute each){limit}",
        file=sys.stderr,
    )


def _result_or_cancel(future: Future[T], timeout: float | None = None) -> T:
    try:
        return future.result(timeout)
    finally:
        # A no-op once done; on a timeout or Ctrl-C it withdraws the call if still pending.
        future.cancel()


def starburst_map(
    items: Iterable[Any],
    fn: Callable[[Any], T],
    workers: int = 10,
    cpu: float = 4,
    memory: str | int = "8GB",
    region: str | None = None,
    **settings: Any,
) -> list[T]:
    """Apply ``fn`` to every item on Fargate workers and return the results in order.

    staRburst's ``starburst_map``: ``starburst_map(range(100), f, workers=10)``.
    ``settings`` go to :class:`FargateExecutor` (``backend="local"`` works too).
    """
    chunksize = settings.pop("chunksize", None)
    with FargateExecutor(
        max_workers=workers, cpu=cpu, memory=memory, region=region, **settings
    ) as executor:
        return list(executor.map(fn, items, chunksize=chunksize))


def starburst_cluster(
    workers: int = 10, cpu: float = 4, memory: str | int = "8GB", **settings: Any
) -> FargateExecutor:
    """staRburst's ``starburst_cluster``: an executor to reuse for several maps.

    ``cluster.map(fn, items)`` as often as needed; ``cluster.shutdown()`` (or a with-block)
    when done.
    """
    return FargateExecutor(max_workers=workers, cpu=cpu, memory=memory, **settings)
