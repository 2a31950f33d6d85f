"""What a detached session keeps in its store besides the batches, shared by the client, the
workers and ``attach``: the session's limits, its queue, its workers' records, its halt order.

::

    detached.json           signed JSON: limits (max_cost, deadline), price of a worker, retries
    queue/<batch id>        signed JSON: the item ids of one uploaded batch (submission order)
    done/<batch id>         empty: the batch's last result part is written
    workers/<worker id>     signed JSON: started, last seen, exited, pid and host (spend, cancel)
    halt                    signed JSON: why no batch may start any more (cancel, max_cost, ...)

Claims (``claims/<batch id>.<attempt>``, ``_keys``) hold a lease: the worker running an attempt
rewrites its claim every ``lease_timeout / 3``; an attempt whose claim is older than
``lease_timeout`` and whose batch is not done is lost, and the next attempt may be claimed.
Pure: the store is whatever object has ``get``/``put``/``put_if_absent``/``list``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from . import _keys, payload
from .cost import billed_seconds
from .errors import ObjectNotFound

__all__ = ["SessionDoc", "WorkerRecord", "DOC", "HALT", "QUEUE_PREFIX", "DONE_PREFIX",
           "WORKERS_PREFIX", "queue_key", "done_key", "worker_key", "spend",
           "write_signed", "read_signed", "latest_claims"]

DOC = "detached.json"
HALT = "halt"
QUEUE_PREFIX = "queue/"
DONE_PREFIX = "done/"
WORKERS_PREFIX = "workers/"
ENV_DETACHED = "STARBURST_SERVE_QUEUE"  # "1": serve the queue, not assignments (worker env)


def queue_key(batch_id: str) -> str:
    return f"{QUEUE_PREFIX}{batch_id}"


def done_key(batch_id: str) -> str:
    return f"{DONE_PREFIX}{batch_id}"


def worker_key(worker_id: str) -> str:
    return f"{WORKERS_PREFIX}{worker_id}"


def write_signed(store: Any, key: str, doc: Any, secret: bytes) -> None:
    store.put(key, payload.dump("session", json.dumps(doc).encode(), key=key, secret=secret))


def read_signed(store: Any, key: str, secret: bytes) -> Any:
    """The JSON document under ``key`` once its MAC checks out; ``ObjectNotFound`` if none."""
    return json.loads(bytes(payload.open_frame(store.get(key), "session", key=key,
                                               secret=secret)))


@dataclasses.dataclass(frozen=True)
class SessionDoc:
    """The limits and prices of a detached session (``detached.json``), written by the client.

    ``hourly``: USD per worker-hour (0 where nothing is billed); ``minimum_seconds``: billed at
    least this long per worker (Fargate: 60).  ``deadline_at``: ``time.time()`` after which no
    batch starts.
    """

    session_id: str
    backend: str
    created: float
    max_cost: float | None
    deadline_at: float | None
    max_retries: int
    lease_timeout: float
    hourly: float
    minimum_seconds: float
    max_workers: int
    launcher: dict[str, Any] = dataclasses.field(default_factory=dict)

    def write(self, store: Any, secret: bytes) -> None:
        write_signed(store, DOC, dataclasses.asdict(self), secret)

    @classmethod
    def read(cls, store: Any, secret: bytes) -> SessionDoc:
        doc = read_signed(store, DOC, secret)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    def over_limit(self, spent: float, now: float | None = None) -> str | None:
        """Why no batch may start now, or ``None``."""
        now = time.time() if now is None else now
        if self.deadline_at is not None and now >= self.deadline_at:
            return f"deadline reached ({time.ctime(self.deadline_at)})"
        if self.max_cost is not None and spent >= self.max_cost:
            return f"max_cost=${self.max_cost:.4f} reached (spent ${spent:.4f})"
        return None


@dataclasses.dataclass(frozen=True)
class WorkerRecord:
    """What a worker says of itself (``workers/<id>``), refreshed with its lease."""

    worker_id: str
    started: float
    last: float
    exited: float | None = None
    pid: int = 0
    host: str = ""

    def alive(self, lease_timeout: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.exited is None and now - self.last <= lease_timeout

    def seconds(self, lease_timeout: float, now: float) -> float:
        """How long it ran (until now while it is alive, else until it was last seen)."""
        end = self.exited if self.exited is not None else \
            (now if self.alive(lease_timeout, now) else self.last)
        return max(0.0, end - self.started)


def read_workers(store: Any, secret: bytes) -> list[WorkerRecord]:
    records = []
    for key in store.list(WORKERS_PREFIX):
        try:
            doc = read_signed(store, key, secret)
        except Exception:  # unreadable or forged: not counted, never trusted
            continue
        records.append(WorkerRecord(**doc))
    return records


def spend(doc: SessionDoc, workers: list[WorkerRecord], now: float | None = None) -> float:
    """USD the session's workers cost so far, as ``cost`` bills them."""
    now = time.time() if now is None else now
    total = 0.0
    for record in workers:
        seconds = record.seconds(doc.lease_timeout, now)
        if doc.minimum_seconds:
            seconds = billed_seconds(seconds)
        total += seconds * doc.hourly / 3600.0
    return total


def latest_claims(store: Any) -> dict[str, int]:
    """batch id -> the highest attempt claimed (one LIST of ``claims/``)."""
    latest: dict[str, int] = {}
    for key in store.list(_keys.CLAIMS_PREFIX):
        try:
            batch_id, attempt = _keys.parse_claim_key(key)
        except ValueError:
            continue
        if attempt > latest.get(batch_id, 0):
            latest[batch_id] = attempt
    return latest


def read_claim(store: Any, batch_id: str, attempt: int) -> _keys.Claim | None:
    """The claim of ``attempt`` of ``batch_id`` (``None``: there is none, or it is unreadable)."""
    try:
        return _keys.Claim.decode(store.get(_keys.claim_key(batch_id, attempt)))
    except (ObjectNotFound, ValueError):
        return None
