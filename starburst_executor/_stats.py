"""Request counts of a store or a launcher: what ``usage()`` reports of the platform's APIs."""

from __future__ import annotations

__all__ = ["RequestStats"]


class RequestStats:
    """Counts of the requests made, by operation; bytes moved each way (stores) and tasks
    started (launchers)."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.tasks_started = 0
        # worker id -> task id of the workers a stop failed for, while they may still run
        # (launchers write it; the ledger keeps billing them).
        self.not_stopped: dict[str, str] = {}

    def count(self, operation: str, n: int = 1) -> None:
        self.requests[operation] = self.requests.get(operation, 0) + n
