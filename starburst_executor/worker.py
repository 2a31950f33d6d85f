"""The worker: ``python -m starburst_executor.worker``.

It reads keys and settings from its environment (see ``_keys``), and the session secret that
authenticates every object it reads and writes (see ``_auth``), runs the executor's initializer
if there is one (``_initializer``), then loops::

    wait for assign/<worker id>/<seq>  --(idle_timeout passes, or a stop order)-->  exit 0
      claim claims/<batch id>.<attempt> (create-if-absent)  --(revoked by the client)-->  next
      fetch the batch and its functions (functions cached by content hash; a small one the
      client did not send yet comes inside the assignment; a new one of a batch that came
      inline is read while the claim is written)
      run each call, its output captured (_output), writing results in parts as they finish
      (every flush_interval); late in a long batch (on S3), read assign/<worker id>/<seq + 1>
      once, early: found, the next batch starts with its claim alone
      seq += 1

so a warm worker takes the next batch without a new cold start.  It imports payload, storage,
errors, _keys, _pickling, _threads (the thread pools are capped at start), _output and _parts
(results written in parts), never the engine or the executor.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from . import _auth, _detached, _keys, _output, _pickling, _queue, _threads, payload
from ._initializer import Initializer
from ._parts import PartWriter, nothing
from .errors import (
    InitializerFailed,
    IntegrityError,
    ObjectNotFound,
    PayloadVersionError,
    SerializationError,
    StarburstError,
)
from .storage import ObjectStore, is_remote, open_store

__all__ = ["Worker", "main"]


def _log(message: str) -> None:
    # The worker's own stderr, never a call's captured output (see _output).
    print(f"[starburst worker {time.strftime('%H:%M:%S')}] {message}",
          file=sys.__stderr__ or sys.stderr, flush=True)


class Worker:
    """Runs assignments from one store until idle.  See the module docstring."""

    def __init__(
        self,
        store: ObjectStore,
        worker_id: str,
        *,
        secret: bytes,
        idle_timeout: float = 60.0,
        flush_interval: float = 1.0,
        poll_min: float = 0.002,
        poll_max: float = 1.0,
        flush_bytes: int = 8 * 1024 * 1024,
        capture_output: bool = True,
        initializer: str | None = None,
        max_result_size: int | None = None,
        detached: bool = False,
    ):
        self.store = store
        self.remote = is_remote(store)  # S3: every request a billed round trip
        self.worker_id = worker_id
        self.secret = secret
        self.idle_timeout = idle_timeout
        self.flush_interval = flush_interval
        self.poll_min = poll_min
        self.poll_max = poll_max
        self.flush_bytes = flush_bytes
        self.max_result_size = max_result_size  # a larger result fails its call (ResultTooLarge)
        self._functions: dict[str, Callable[..., Any]] = {}
        self._output = _output.OutputCapture() if capture_output else None
        self._initializer_key = initializer
        self._initializer: Initializer | None = None
        self.detached = detached  # serve a detached session's queue (see _queue)

    def run(self) -> int:
        """Serve assignments until idle or told to stop; return the exit code."""
        if self._output is None:
            return self._serve()
        with self._output:  # before any user code is unpickled (see _output)
            return self._serve()

    def _serve(self) -> int:
        if self.detached:
            return _queue.QueueServer(self, _log).serve()
        failed = self._initialize()
        seq = 0
        finishing: Callable[[], None] = nothing  # waits for the last batch's last part
        ahead: _Lookahead | None = None  # the next assignment, read late in a long batch
        try:
            while True:
                assignment = ahead.take() if ahead is not None else None
                ahead = None
                if assignment is None:
                    assignment = self._next_assignment(seq)
                if assignment is None:
                    _log(f"{self.worker_id}: idle for {self.idle_timeout:g}s, exiting")
                    return 0
                if assignment.stop:
                    _log(f"{self.worker_id}: stop order received, exiting")
                    return 0
                if failed is not None:
                    # Said through the batch's results, which the client reads anyway.
                    self._fail_whole_batch(assignment, failed)
                    return 1
                fetching, batch = self._fetch_functions(assignment)
                claimed = self._claim(assignment)
                fetching()
                # Its results were written meanwhile (on a remote store, a round trip or two
                # saved between two batches); they are out before the next batch starts.
                wait, finishing = finishing, nothing
                wait()
                if claimed:
                    ahead = self._look_ahead(seq + 1, assignment.expected)
                    finishing = self._run_batch(assignment, batch)
                seq += 1
        finally:
            if ahead is not None:
                ahead.cancel()
            finishing()  # out before the worker exits, whatever ends it

    def _fetch_functions(self, assignment: payload.Assignment
                         ) -> tuple[Callable[[], None], payload.Batch | None]:
        """On a remote store, read the functions of a batch that came inline and are not
        cached yet while its claim is written (a worker's first batch: two round trips side
        by side).  Returns what waits for them, and the batch if it was read."""
        if not assignment.batch or not self.remote:
            return nothing, None
        try:
            batch = payload.Batch.decode(assignment.batch, key=_keys.batch_key(
                assignment.batch_id), secret=self.secret)
            self._take_inline_function(assignment, batch)
        except Exception:  # read again, and refused with a reason, by _run_batch
            return nothing, None
        missing = [d for d in batch.digests if d not in self._functions]
        if not missing:
            return nothing, batch

        def fetch() -> None:
            try:
                for digest in missing:
                    self._load_function(digest)
            except Exception:  # read again, and reported with the batch, by _run_batch
                pass

        thread = threading.Thread(target=fetch, name="starburst-fetch", daemon=True)
        thread.start()
        return thread.join, batch

    def _look_ahead(self, seq: int, expected: float) -> _Lookahead | None:
        """On a remote store, read assignment ``seq`` once, late in a batch expected to run
        ``expected`` seconds: the client writes it while the batch runs, so found, the next
        batch starts after one round trip (its claim), not two."""
        if not self.remote or expected < _AHEAD_MIN_SECONDS:
            return None
        return _Lookahead(self, _keys.assign_key(self.worker_id, seq), expected * _AHEAD_AT)

    def _next_assignment(self, seq: int) -> payload.Assignment | None:
        key = _keys.assign_key(self.worker_id, seq)
        deadline = time.monotonic() + self.idle_timeout
        delay = self.poll_min  # every poll of a remote store is a billed request
        polls = 0
        while True:
            # One that fails its check ends this worker (IntegrityError): its batch is lost
            # and retried on another worker, whose assignment is fresh.
            assignment = self._read_assignment(key)
            if assignment is not None:
                return assignment
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(delay * random.uniform(0.8, 1.2), left))
            polls += 1
            if polls >= _EAGER_POLLS:  # the next batch is most likely in the first seconds
                delay = min(delay * 1.5, self.poll_max)

    def _read_assignment(self, key: str) -> payload.Assignment | None:
        """The assignment under ``key``, checked; ``None`` if there is none (yet)."""
        try:
            return payload.Assignment.decode(self.store.get(key), key=key, secret=self.secret)
        except ObjectNotFound:
            return None

    def _claim(self, assignment: payload.Assignment) -> bool:
        """Start an attempt only by creating its claim: the client may have revoked it first."""
        key = _keys.claim_key(assignment.batch_id, assignment.attempt)
        claim = _keys.Claim(self.worker_id, at=time.time())
        if self.store.put_if_absent(key, claim.encode()):
            return True
        _log(f"{self.worker_id}: batch {assignment.batch_id} attempt {assignment.attempt} was "
             "revoked, skipping it")
        return False

    def _load_function(self, digest: str, data: bytes | None = None) -> Callable[..., Any]:
        """The function ``digest``: cached, else from ``data`` (its stored object), else read."""
        fn = self._functions.get(digest)
        if fn is None:
            key = _keys.function_key(digest)
            data = self.store.get(key) if data is None else data
            fn = payload.load(data, "function", key=key, secret=self.secret)
            if self._initializer is not None:
                self._initializer.share(fn)
            self._functions[digest] = fn
        return fn

    def _take_inline_function(self, assignment: payload.Assignment,
                              batch: payload.Batch) -> None:
        """Load the function sent inside the assignment (the batch's one: a client's batch
        calls one function), if any."""
        if assignment.function and batch.digests:
            self._load_function(batch.digests[0], assignment.function)

    def _initialize(self) -> BaseException | None:
        """Run the initializer, if any; return what breaks the executor if it failed."""
        if self._initializer_key is None:
            return None
        try:
            key = self._initializer_key
            self._initializer = Initializer.load(self.store.get(key), key=key, secret=self.secret)
            failed = self._initializer.run(self.worker_id)
        except Exception as exc:  # a module missing here, a payload of another Python
            failed = InitializerFailed(
                f"the initializer could not be loaded on worker {self.worker_id}: "
                f"{type(exc).__name__}: {exc}")
            failed.__cause__ = exc
        if failed is not None:
            _log("".join(traceback.format_exception(type(failed), failed, None)).rstrip())
        return failed

    def _fail_whole_batch(self, assignment: payload.Assignment, error: BaseException) -> None:
        writer = PartWriter(self, assignment.batch_id, assignment.attempt, _log)
        writer.add(payload.encode_exception(payload.WHOLE_BATCH, error, 0.0, 0.0))
        writer.flush(final=True)

    def _run_batch(self, assignment: payload.Assignment, batch: payload.Batch | None = None
                   ) -> Callable[[], None]:
        """Run the batch (``batch``: read already); return what waits for its last part to be
        written."""
        batch_id, attempt = assignment.batch_id, assignment.attempt
        writer = PartWriter(self, batch_id, attempt, _log)
        try:
            if batch is None:
                key = _keys.batch_key(batch_id)
                data = assignment.batch or self.store.get(key)  # a small one came inline
                batch = payload.Batch.decode(data, key=key, secret=self.secret)
                self._take_inline_function(assignment, batch)  # else taken already
            functions = [self._load_function(d) for d in batch.digests]
        except Exception as exc:
            error: Exception = exc
            if not isinstance(exc, (PayloadVersionError, IntegrityError)):
                error = _unpickling_error(f"batch {batch_id}", self.worker_id, exc)
            # The whole batch fails with this error; no retry would read it any better.
            _log(f"{self.worker_id}: refusing batch {batch_id}: {error}")
            writer.add(payload.encode_exception(payload.WHOLE_BATCH, error, 0.0, 0.0, ""))
            writer.flush(final=True)
            return nothing
        _log(f"{self.worker_id}: batch {batch_id} attempt {attempt}: {len(batch.calls)} calls")
        writer.last_flush = time.monotonic()  # fetching is not running: no part is due yet
        for call in batch.calls:
            if call.item_id not in assignment.skip:
                writer.add(self._run_call(call, functions[call.fn_index]))
        return writer.finish()

    def _run_call(self, call: payload.Call, fn: Callable[..., Any]) -> payload.ResultRecord:
        started = time.time()
        try:
            args, kwargs = call.arguments()
        except Exception as exc:  # fails this call only: the others' arguments are fine
            error = _unpickling_error(f"the arguments of call {call.item_id}",
                                      self.worker_id, exc)
            return payload.encode_exception(call.item_id, error, started, time.time(), "")
        limit, output = self.max_result_size, self._output
        if output is None:
            return _call(call.item_id, fn, args, kwargs, started, limit)
        output.begin()
        try:
            record = _call(call.item_id, fn, args, kwargs, started, limit)
        finally:
            record_output = output.end()
        record.output = record_output
        return record


def _call(item_id: int, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
          started: float, limit: int | None = None) -> payload.ResultRecord:
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # like the stdlib pool: SystemExit travels back too
        return payload.encode_exception(item_id, exc, started, time.time())
    return payload.encode_value(item_id, value, started, time.time(), limit)


def _unpickling_error(what: str, worker_id: str, exc: Exception) -> SerializationError:
    cause = f"{type(exc).__name__}: {exc}"
    hint = _pickling.explain_unpickling_error(exc)
    text = hint if hint.startswith(cause) else f"{cause}; {hint}"
    return SerializationError(f"{what} could not be unpickled on worker {worker_id}: {text}")


# Polls at the shortest interval after a batch, before backing off: the client writes the
# next assignment within a poll or two of seeing the last results.
_EAGER_POLLS = 3

# The next assignment is read once, early, in a batch expected to run this long or longer, at
# this share of it (the client queues it a poll or so after the batch starts).
_AHEAD_MIN_SECONDS = 0.5
_AHEAD_AT = 0.75


class _Lookahead:
    """One read of an assignment, in the background after ``delay`` seconds unless taken (or
    cancelled) first.  Not found, or not read in time: the worker's usual polls read it."""

    def __init__(self, worker: Worker, key: str, delay: float):
        self._worker = worker
        self._key = key
        self._taken = threading.Event()
        self._found: payload.Assignment | None = None
        self._forged: IntegrityError | None = None
        self._thread = threading.Thread(target=self._read, args=(delay,),
                                        name="starburst-lookahead", daemon=True)
        self._thread.start()

    def _read(self, delay: float) -> None:
        if self._taken.wait(delay):
            return
        worker = self._worker
        try:
            self._found = worker._read_assignment(self._key)
        except IntegrityError as exc:  # ends the worker, as the usual read of it would
            self._forged = exc
        except Exception as exc:  # the usual polls read it again
            _log(f"{worker.worker_id}: reading the next assignment early failed: "
                 f"{type(exc).__name__}: {exc}")

    def take(self) -> payload.Assignment | None:
        """The assignment, if read (after the read under way, if any), else ``None``."""
        self._taken.set()
        self._thread.join()
        if self._forged is not None:
            raise self._forged
        return self._found

    def cancel(self) -> None:
        self._taken.set()


def _watch_parent(parent_pid: int) -> None:
    # A local worker must not outlive a client that was killed (SIGKILL skips every cleanup).
    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                _log(f"client process {parent_pid} is gone, exiting")
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, name="starburst-parent-watch", daemon=True).start()


def main(env: Mapping[str, str] | None = None) -> int:
    """Entry point: configure a :class:`Worker` from the environment and run it."""
    env = os.environ if env is None else env
    try:
        url = env[_keys.ENV_STORE_URL]
        worker_id = env[_keys.ENV_WORKER_ID]
    except KeyError as missing:
        _log(f"{missing} is not set: this module is started by starburst-executor, not by hand")
        return 2
    if env is os.environ:  # the calls run here, and what they start need not inherit it
        secret_text = os.environ.pop(_auth.ENV_SECRET, "")
    else:
        secret_text = env.get(_auth.ENV_SECRET, "")
    detached = env.get(_detached.ENV_DETACHED) == "1"  # outlives its client, by design
    if env.get(_keys.ENV_PARENT_PID) and not detached:
        _watch_parent(int(env[_keys.ENV_PARENT_PID]))
    if env is os.environ:  # before any user code is unpickled: BLAS reads these at import
        _threads.cap_thread_pools(os.environ)
    try:
        secret = _auth.secret_from_env(secret_text)
        store = open_store(url)
        worker = Worker(
            store,
            worker_id,
            secret=secret,
            idle_timeout=float(env.get(_keys.ENV_IDLE_TIMEOUT, "60")),
            flush_interval=float(env.get(_keys.ENV_FLUSH_INTERVAL, "1")),
            poll_min=float(env.get(_keys.ENV_POLL_MIN, "0.002")),
            poll_max=float(env.get(_keys.ENV_POLL_MAX, "1")),
            capture_output=env.get(_keys.ENV_CAPTURE_OUTPUT, "1") != "0",
            initializer=env.get(_keys.ENV_INITIALIZER) or None,
            max_result_size=int(env[_keys.ENV_MAX_RESULT_SIZE])
            if env.get(_keys.ENV_MAX_RESULT_SIZE) else None,
            detached=detached,
        )
        return worker.run()
    except StarburstError as exc:
        _log(f"{worker_id}: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
