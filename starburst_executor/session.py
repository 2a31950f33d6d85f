"""``attach(session_id)``: a detached session, seen from any process: status, futures, results,
``cancel()`` and ``cleanup()``.

The session's secret never touches the store.  The machine that submitted keeps it in
``~/.config/starburst/sessions/<id>.key`` (mode 0600, directory 0700) next to
``<id>.json`` (where the store is, which backend); :func:`attach` reads both, or takes them as
arguments (``attach(id, secret=..., store=...)``) on another machine.

A :class:`Session` polls the store in a daemon thread: one LIST of ``queue/`` (new calls), one
of ``results/`` (each new part read once), and, once a ``halt`` is written and no worker is
alive, fails the calls left with :class:`~starburst_executor.errors.SessionStopped`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, InvalidStateError, as_completed
from pathlib import Path
from typing import Any

from . import _auth, _detached, _keys, payload
from ._future import CallMetadata, StarburstFuture
from .config import config_path
from .engine.results import ResultReader
from .errors import ConfigError, ObjectNotFound, SessionStopped
from .storage import ObjectStore, open_store

__all__ = ["attach", "Session", "SessionStatus", "sessions_dir", "save_session",
           "local_sessions"]


def sessions_dir() -> Path:
    """Where this machine keeps the secrets of its detached sessions (created 0700)."""
    path = config_path().parent / "sessions"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def save_session(session_id: str, secret: bytes, info: dict[str, Any]) -> Path:
    """Keep ``secret`` (mode 0600) and ``info`` (store URL, backend...) for :func:`attach`."""
    directory = sessions_dir()
    key_path = directory / f"{session_id}.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_auth.secret_to_env(secret))
    os.chmod(key_path, 0o600)
    (directory / f"{session_id}.json").write_text(json.dumps(info))
    return key_path


def local_sessions() -> list[str]:
    """The ids of the detached sessions submitted from this machine, oldest first."""
    return sorted(p.stem for p in sessions_dir().glob("*.json"))


def attach(session_id: str, *, secret: bytes | str | None = None, store: str | None = None,
           **settings: Any) -> Session:
    """The detached session ``session_id``, from this or another process or machine.

    Args:
        secret: the session's secret (the text of its ``.key`` file, or bytes); default: read
            from :func:`sessions_dir`.
        store: the URL of the session's store (``s3://bucket/prefix/sessions/<id>``); default:
            what the submitting machine recorded, else the configured bucket and prefix.
        **settings: ``region``, ``cluster``... for cancelling Fargate tasks from elsewhere.
    """
    directory = sessions_dir()
    info_path = directory / f"{session_id}.json"
    info: dict[str, Any] = json.loads(info_path.read_text()) if info_path.exists() else {}
    info.update({k: v for k, v in settings.items() if v is not None})
    if store is None:
        store = info.get("store_url")
    if store is None:
        from .config import load_config, store_root

        config = load_config({k: v for k, v in settings.items() if k != "backend"})
        store = store_root(config).rstrip("/") + f"/sessions/{session_id}"
    if secret is None:
        key_path = directory / f"{session_id}.key"
        if not key_path.exists():
            raise ConfigError(f"no secret for session {session_id} in {directory}: pass "
                              "attach(id, secret=...) with the text of its .key file from the "
                              "machine that submitted it")
        secret = key_path.read_text().strip()
    if isinstance(secret, str):
        secret = _auth.secret_from_env(secret)
    return Session(session_id, open_store(store), secret, info)


@dataclasses.dataclass(frozen=True)
class SessionStatus:
    """Where a detached session stands."""

    session_id: str
    calls: int
    done: int
    failed: int
    running: int
    pending: int
    workers: int  # alive now
    workers_started: int
    cost: float
    halted: str | None

    def __str__(self) -> str:
        halted = f", stopped: {self.halted}" if self.halted else ""
        return (f"{self.session_id}: {self.done + self.failed}/{self.calls} calls done "
                f"({self.failed} failed, {self.running} running, {self.pending} pending), "
                f"{self.workers} workers alive of {self.workers_started}, "
                f"${self.cost:.4f}{halted}")


class Session:
    """A detached session's calls and workers (see the module docstring)."""

    def __init__(self, session_id: str, store: ObjectStore, secret: bytes,
                 info: dict[str, Any] | None = None, *, poll: bool = True) -> None:
        self.session_id = session_id
        self.store = store
        self._secret = secret
        self._info = dict(info or {})
        self.doc = _detached.SessionDoc.read(store, secret)
        self._lock = threading.Lock()
        self._futures: dict[int, StarburstFuture[Any]] = {}
        self._batch_items: dict[str, list[int]] = {}
        self._reader = ResultReader(store, secret=secret)
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()
        if poll:
            self._thread = threading.Thread(target=self._poll, daemon=True,
                                            name=f"starburst-session-{session_id}")
            self._thread.start()

    # -- what the store says ------------------------------------------------------------------

    def refresh(self) -> None:
        """Read new batches and result parts once; fail what is left once the session halted
        and no worker is alive."""
        with self._lock:
            self._read_queue()
            self._read_results()
            if self._unresolved():
                halt = self._halt()
                if halt is not None and not self._alive():
                    self._read_results()  # a worker may have written its last part as it went
                    self._fail_left(halt)

    def _read_queue(self) -> None:
        for key in self.store.list(_detached.QUEUE_PREFIX):
            batch_id = key[len(_detached.QUEUE_PREFIX):]
            if batch_id in self._batch_items:
                continue
            items = [int(i) for i in _detached.read_signed(self.store, key, self._secret)["items"]]
            self._batch_items[batch_id] = items
            for item_id in items:
                self._futures.setdefault(item_id, _new_future(item_id, batch_id))

    def _read_results(self) -> None:
        for key in self._reader.look(""):
            try:
                batch_id, _, _ = _keys.parse_result_key(key)
            except ValueError:
                continue
            part = self._reader.read(key)
            items = self._batch_items.get(batch_id, [])
            if not isinstance(part, payload.ResultPart):
                continue  # unreadable or forged: that attempt is rerun once its lease runs out
            for record in part.records:
                ok, value = payload.decode_result(record)
                targets = items if record.item_id == payload.WHOLE_BATCH else [record.item_id]
                for item_id in targets:
                    future = self._futures.get(item_id)
                    if future is not None and not future.done():
                        future.metadata.worker_id = part.worker_id
                        future.metadata.attempts = part.attempt
                        _settle(future, ok, value)

    def _unresolved(self) -> list[StarburstFuture[Any]]:
        return [f for f in self._futures.values() if not f.done()]

    def _halt(self) -> str | None:
        try:
            return str(_detached.read_signed(self.store, _detached.HALT, self._secret)["reason"])
        except ObjectNotFound:
            return None

    def _workers(self) -> list[_detached.WorkerRecord]:
        return _detached.read_workers(self.store, self._secret)

    def _alive(self) -> bool:
        return any(w.alive(self.doc.lease_timeout) for w in self._workers())

    def _fail_left(self, reason: str) -> None:
        for future in self._unresolved():
            _settle(future, False, SessionStopped(
                f"session {self.session_id} stopped before call {future.metadata.item_id} "
                f"ran: {reason}"))

    def _poll(self) -> None:
        delay = 0.05
        while not self._closed.is_set():
            before = sum(f.done() for f in self._futures.values())
            try:
                self.refresh()
            except Exception:  # a store hiccup: try again at the next turn
                pass
            after = sum(f.done() for f in self._futures.values())
            delay = 0.05 if after > before else min(delay * 1.5, 2.0)
            self._wake.wait(delay)
            self._wake.clear()

    # -- the public face ----------------------------------------------------------------------

    def adopt(self, batch_id: str, futures: dict[int, StarburstFuture[Any]]) -> None:
        """The submitting executor's own futures of a batch just queued: resolve these."""
        with self._lock:
            self._batch_items[batch_id] = sorted(futures)
            self._futures.update(futures)

    def futures(self) -> list[StarburstFuture[Any]]:
        """A future for every call, in submission order (resolved as results land)."""
        with self._lock:
            return [self._futures[i] for i in sorted(self._futures)]

    def results(self, timeout: float | None = None) -> Iterator[Any]:
        """Every call's result in submission order; a failed call raises its exception."""
        end = None if timeout is None else time.monotonic() + timeout
        for future in self.futures():
            yield future.result(None if end is None else max(0.0, end - time.monotonic()))

    def as_completed(self, timeout: float | None = None) -> Iterator[Future[Any]]:
        """The futures of every call as they finish."""
        return as_completed(self.futures(), timeout=timeout)

    def status(self) -> SessionStatus:
        """Calls done, failed, running and pending; workers alive; cost so far."""
        self.refresh()
        claimed = _detached.latest_claims(self.store)
        done_batches = {k[len(_detached.DONE_PREFIX):]
                        for k in self.store.list(_detached.DONE_PREFIX)}
        workers = self._workers()
        with self._lock:
            futures = dict(self._futures)
            batch_items = dict(self._batch_items)
        done = sum(f.done() and f.exception() is None for f in futures.values())
        failed = sum(f.done() and f.exception() is not None for f in futures.values())
        running = sum(1 for b, items in batch_items.items()
                      if b in claimed and b not in done_batches
                      for i in items if not futures[i].done())
        return SessionStatus(
            self.session_id, len(futures), done, failed, running,
            len(futures) - done - failed - running,
            sum(w.alive(self.doc.lease_timeout) for w in workers), len(workers),
            _detached.spend(self.doc, workers), self._halt())

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the workers now: no batch starts any more, running ones are stopped."""
        key = _detached.HALT
        body = {"reason": reason, "at": time.time()}
        _detached.write_signed(self.store, key, body, self._secret)
        stop_workers(self.session_id, self.doc, self._workers(), self._info)
        self._wake.set()

    def cleanup(self) -> None:
        """Delete the session's objects and this machine's copy of its secret."""
        self.close()
        self.store.delete_prefix("")
        for suffix in (".key", ".json"):
            (sessions_dir() / f"{self.session_id}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        """Stop polling (the workers go on)."""
        self._closed.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def __repr__(self) -> str:
        return f"<Session {self.session_id} backend={self.doc.backend}>"


def _new_future(item_id: int, batch_id: str) -> StarburstFuture[Any]:
    future: StarburstFuture[Any] = StarburstFuture(CallMetadata(item_id, 0.0))
    future.metadata.batch_id = batch_id
    return future


def _settle(future: StarburstFuture[Any], ok: bool, value: Any) -> None:
    try:
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    except InvalidStateError:  # cancelled here, or resolved by another attempt's part
        pass


def stop_workers(session_id: str, doc: _detached.SessionDoc,
                 workers: list[_detached.WorkerRecord], info: dict[str, Any]) -> None:
    """Stop a session's workers: local processes by their recorded pid; Fargate tasks by the
    ``startedBy`` every task of the session carries."""
    if doc.backend == "fargate":
        _stop_fargate_tasks(session_id, {**doc.launcher, **info})
        return
    host = socket.gethostname()
    for record in workers:
        if record.exited is None and record.host == host and record.pid and \
                _is_worker(record.pid):
            try:
                os.killpg(record.pid, signal.SIGKILL)  # its own process group (new session)
            except (ProcessLookupError, PermissionError):
                pass


def _is_worker(pid: int) -> bool:
    try:
        return b"starburst_executor.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc").exists()  # no /proc to check: trust the signed record


def _stop_fargate_tasks(session_id: str, info: dict[str, Any]) -> None:
    from . import _aws

    ecs = _aws.client("ecs", info.get("region"))
    cluster = info.get("cluster", "starburst")
    started_by = f"starburst-{session_id}"[:128]
    for status in ("RUNNING", "PENDING"):
        pages = ecs.get_paginator("list_tasks").paginate(
            cluster=cluster, startedBy=started_by, desiredStatus=status)
        for page in pages:
            for arn in page.get("taskArns", []):
                ecs.stop_task(cluster=cluster, task=arn, reason=f"session {session_id} cancelled")
