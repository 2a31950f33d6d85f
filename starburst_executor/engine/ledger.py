"""The cost ledger: when each worker was billed from and to, ``max_cost``, and :class:`Usage`.

Spans are wall-clock seconds from launch to stop, read by ``usage()`` from any thread, hence
the lock.  Only the manager thread writes them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import CostLimitExceeded

__all__ = ["Ledger", "Usage"]


@dataclasses.dataclass(frozen=True)
class Usage:
    """What an executor did and used.

    Attributes:
        requests: requests made by the client, by ``"service.operation"`` (store and launcher).
        bytes_uploaded: bytes the client wrote to the store.
        bytes_downloaded: bytes the client read from the store.
        calls: calls submitted.
        batches: batches uploaded.
        retries: batch attempts beyond the first.
        tasks_launched: workers started.
        task_seconds: seconds workers ran (or have run so far), summed, from launch to stop.
        cost: USD billed for those seconds (one-minute minimum per task), or ``None`` where
            nothing is billed (local and docker backends).
        tasks_not_stopped: workers a stop failed for, which may still run and bill (each is
            also named by a warning); counted in ``task_seconds`` and ``cost`` up to now.
        reruns: calls run a second time because their batch straggled (the first result
            wins; see ``rerun_stragglers``).
    """

    requests: dict[str, int]
    bytes_uploaded: int
    bytes_downloaded: int
    calls: int
    batches: int
    retries: int
    tasks_launched: int
    task_seconds: float
    cost: float | None = None
    tasks_not_stopped: int = 0
    reruns: int = 0


class Ledger:
    """Billed spans of the workers, the ``max_cost`` checks, and the counts behind :class:`Usage`.

    Args:
        price: USD billed for one worker that ran some seconds, or ``None`` where nothing is
            billed.
        max_cost: the most USD this executor may bill, or ``None``.
        store_name: names the store's requests in ``Usage.requests`` (``"s3"``, ...).
        launcher_name: names the launcher's own requests (``"ecs"``, ...).
        launcher_stats: the launcher's :class:`~starburst_executor._stats.RequestStats`: a
            worker in its ``not_stopped`` is billed up to now, whatever ended its span.
    """

    def __init__(self, price: Callable[[float], float] | None, max_cost: float | None, *,
                 store_name: str = "store", launcher_name: str = "launcher",
                 launcher_stats: Any = None) -> None:
        self._launcher_stats = launcher_stats
        self._price = price
        self._max_cost = max_cost
        self._store_name = store_name
        self._launcher_name = launcher_name
        # worker id -> [launched at, stopped at or 0.0] (wall clock): what the tasks are billed.
        self._spans: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self.batches = 0
        self.retries = 0
        self.reruns = 0

    @property
    def billing(self) -> bool:
        return self._price is not None

    def open_span(self, worker_id: str) -> None:
        with self._lock:
            self._spans[worker_id] = [time.time(), 0.0]

    def end_span(self, worker_id: str, at: float | None = None) -> None:
        with self._lock:
            span = self._spans.get(worker_id)
            if span is not None and not span[1]:
                span[1] = at or time.time()

    def end_all(self) -> None:
        for worker_id in list(self._spans):
            self.end_span(worker_id)

    def billed(self) -> tuple[float, float | None]:
        """(task seconds, USD or ``None``) so far, running workers counted up to now."""
        now = time.time()
        unstopped = dict(getattr(self._launcher_stats, "not_stopped", None) or {})
        with self._lock:
            for worker_id in unstopped:  # it bills until it stops: open its span again
                span = self._spans.get(worker_id)
                if span is not None:
                    span[1] = 0.0
            durations = [(end or now) - start for start, end in self._spans.values()]
        seconds = sum(durations)
        if self._price is None:
            return seconds, None
        return seconds, sum(self._price(d) for d in durations)

    def affordable(self, wanted: int, others_running: bool
                   ) -> tuple[int, CostLimitExceeded | None]:
        """How many of ``wanted`` new workers fit under ``max_cost`` (each bills a minute).

        With none affordable and none running, also the error to fail the waiting work with.
        """
        limit = self._max_cost
        if limit is None or self._price is None or wanted <= 0:
            return wanted, None
        _, spent = self.billed()
        minimum = self._price(0.0)
        fit = max(0, min(wanted, int((limit - (spent or 0.0)) / minimum) if minimum else wanted))
        if fit == 0 and not others_running:
            return 0, CostLimitExceeded(
                f"starting a worker would exceed max_cost=${limit:.2f}: ${spent or 0.0:.2f} "
                f"spent so far, and a worker bills at least ${minimum:.4f} (one minute). "
                "Raise max_cost to run the rest.")
        return fit, None

    def over_limit(self, spent: float | None) -> CostLimitExceeded | None:
        """The error to stop the work with once ``spent`` passed ``max_cost``, else ``None``."""
        limit = self._max_cost
        if limit is None or spent is None or spent <= limit:
            return None
        return CostLimitExceeded(
            f"the work was stopped at max_cost=${limit:.2f} (${spent:.2f} billed). Raise "
            "max_cost to run the rest.")

    def usage(self, calls: int, store_stats: Any, launcher_stats: Any) -> Usage:
        """A :class:`Usage` from these counts and the store's and launcher's request stats."""
        requests = {f"{self._store_name}.{op}": n for op, n in store_stats.requests.items()}
        # A launcher names its platform's operations bare ("RunTask") and calls to other
        # services with theirs ("sts.GetCallerIdentity").
        requests.update({op if "." in op else f"{self._launcher_name}.{op}": n
                         for op, n in launcher_stats.requests.items()})
        task_seconds, cost = self.billed()
        return Usage(
            requests=requests,
            bytes_uploaded=store_stats.bytes_out,
            bytes_downloaded=store_stats.bytes_in,
            calls=calls,
            batches=self.batches,
            retries=self.retries,
            tasks_launched=launcher_stats.tasks_started,
            task_seconds=task_seconds,
            cost=cost,
            tasks_not_stopped=len(getattr(launcher_stats, "not_stopped", None) or {}),
            reruns=self.reruns,
        )
