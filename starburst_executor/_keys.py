"""Where each object lives inside a session's store, shared by the manager and the worker, and
the one plain object both sides write (:class:`Claim`).

::

    session.json                          who, when, which versions (for status and cleanup)
    functions/<sha256>                    a pickled callable, once per content hash
    initializer/<sha256>                  the pickled (initializer, initargs), once per executor
    batches/<batch id>                    the calls of one batch
    assign/<worker id>/<seq>              JSON: the worker's seq-th assignment, or a stop order
    claims/<batch id>.<attempt>           JSON: who runs this attempt, or that the client revoked
                                          it; created once (put_if_absent), so one side wins
    results/<batch id>.<attempt>.<part>   results of some calls of a batch, written as they finish
"""

from __future__ import annotations

import dataclasses
import json

__all__ = [
    "SESSION",
    "RESULTS_PREFIX",
    "function_key",
    "initializer_key",
    "batch_key",
    "assign_key",
    "CLAIMS_PREFIX",
    "Claim",
    "claim_key",
    "parse_claim_key",
    "result_key",
    "parse_result_key",
]

SESSION = "session.json"
RESULTS_PREFIX = "results/"
CLAIMS_PREFIX = "claims/"

# Names of the environment variables a worker reads: keys and settings, never data.  (The one
# secret a worker gets, the session's MAC key, is ``_auth.ENV_SECRET``.)
ENV_STORE_URL = "STARBURST_STORE_URL"
ENV_WORKER_ID = "STARBURST_WORKER_ID"
ENV_IDLE_TIMEOUT = "STARBURST_IDLE_TIMEOUT"
ENV_FLUSH_INTERVAL = "STARBURST_FLUSH_INTERVAL"
ENV_POLL_MIN = "STARBURST_POLL_MIN"
ENV_POLL_MAX = "STARBURST_POLL_MAX"
ENV_PARENT_PID = "STARBURST_PARENT_PID"
ENV_CAPTURE_OUTPUT = "STARBURST_CAPTURE_OUTPUT"  # "0": leave calls' output in the log
ENV_INITIALIZER = "STARBURST_INITIALIZER"  # the key of the initializer, when there is one
ENV_MAX_RESULT_SIZE = "STARBURST_MAX_RESULT_SIZE"  # bytes; a larger result fails its call


def function_key(digest: str) -> str:
    return f"functions/{digest}"


def initializer_key(digest: str) -> str:
    return f"initializer/{digest}"


def batch_key(batch_id: str) -> str:
    return f"batches/{batch_id}"


def assign_key(worker_id: str, seq: int) -> str:
    return f"assign/{worker_id}/{seq:06d}"


def claim_key(batch_id: str, attempt: int) -> str:
    return f"{CLAIMS_PREFIX}{batch_id}.{attempt}"


def parse_claim_key(key: str) -> tuple[str, int]:
    """Return (batch id, attempt) of a claim key."""
    batch_id, attempt = key[len(CLAIMS_PREFIX):].rsplit(".", 1)
    return batch_id, int(attempt)


def result_key(batch_id: str, attempt: int, part: int) -> str:
    return f"{RESULTS_PREFIX}{batch_id}.{attempt}.{part:05d}"


def parse_result_key(key: str) -> tuple[str, int, int]:
    """Return (batch id, attempt, part) of a result key."""
    batch_id, attempt, part = key[len(RESULTS_PREFIX):].rsplit(".", 2)
    return batch_id, int(attempt), int(part)


@dataclasses.dataclass(frozen=True)
class Claim:
    """The claim of one attempt of a batch: the worker that runs it, or ``revoked``.

    Whoever creates ``claims/<batch id>.<attempt>`` first wins: a worker starts an attempt
    only if it created the claim, and the client revokes a queued attempt by creating it first.
    It names no worker in its key, so any worker could claim a queued batch.  Plain JSON, never
    authenticated: only whether it exists counts, its body is for people reading the bucket.
    """

    worker_id: str = ""
    revoked: bool = False
    at: float = 0.0

    def encode(self) -> bytes:
        if self.revoked:
            return json.dumps({"revoked": True, "at": self.at}).encode()
        return json.dumps({"worker": self.worker_id, "at": self.at}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Claim:
        doc = json.loads(data)
        return cls(doc.get("worker", ""), bool(doc.get("revoked")), float(doc.get("at", 0.0)))
