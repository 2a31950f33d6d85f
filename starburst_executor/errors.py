"""Every error this package raises, in one tree.

::

    StarburstError
     +-- ConfigError (also ValueError)          bad or missing configuration
     +-- SerializationError                     something could not be pickled or unpickled
     |    +-- PayloadVersionError               payload written by another Python/cloudpickle
     |    +-- IntegrityError                    an object failed its authentication check
     +-- PayloadTooLarge                        a result or arguments above ``max_result_size``
     |    +-- ResultTooLarge
     |    +-- ArgumentsTooLarge
     +-- RemoteError                            stands in for a remote exception that cannot travel
     +-- StoreError                             the object store failed
     |    +-- ObjectNotFound (also KeyError)
     |    +-- StoreAccessDenied (also PermissionError)
     +-- LaunchError                            workers could not be started
     +-- ImageError                             the worker image could not be built or pushed
     +-- CostLimitExceeded                      work refused by ``max_cost``
     +-- WorkerLost (also BrokenExecutor)       a worker died with work that could not be retried
     +-- ExecutorBroken (also BrokenExecutor)   the executor itself failed; it takes no more work
          +-- InitializerFailed                 the workers' initializer raised (as ProcessPool)

Every message says what to do next.  ``WorkerLost`` is raised on the futures of the lost batch
only; the executor stays usable.
"""

from __future__ import annotations

from concurrent.futures import BrokenExecutor

__all__ = [
    "StarburstError",
    "ConfigError",
    "SerializationError",
    "PayloadVersionError",
    "IntegrityError",
    "PayloadTooLarge",
    "ResultTooLarge",
    "ArgumentsTooLarge",
    "RemoteError",
    "StoreError",
    "ObjectNotFound",
    "StoreAccessDenied",
    "LaunchError",
    "ImageError",
    "CostLimitExceeded",
    "SessionStopped",
    "WorkerLost",
    "ExecutorBroken",
    "InitializerFailed",
    "RemoteTraceback",
]


class StarburstError(Exception):
    """Base class of every error raised by starburst-executor."""


class ConfigError(StarburstError, ValueError):
    """A configuration value is invalid or missing; the message names the fix."""


class SerializationError(StarburstError):
    """A function, argument, result or exception could not be (un)pickled."""


class PayloadVersionError(SerializationError):
    """A payload was written by a different Python minor or cloudpickle major version."""


class IntegrityError(SerializationError):
    """An object read from the store failed its authentication check, so it was not unpickled.

    It was not written under its key by this session: planted, moved, truncated or altered in
    the store.  Only the batch that needed it fails (or is retried).  ``key`` names the object.
    """

    def __init__(self, key: str, why: str = "its authentication code does not match"):
        super().__init__(
            f"the object {key!r} failed its integrity check ({why}), so it was not unpickled: "
            "it was not written there by this session (planted, truncated or altered in the "
            "store). Check who else can write the store's bucket or directory."
        )
        self.key = key
        self.why = why

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return type(self), (self.key, self.why)


class PayloadTooLarge(StarburstError):
    """A call's result or arguments, pickled, pass ``max_result_size``: that call fails at
    once (not retried, and not its batch) instead of running out of memory on either side."""


class ResultTooLarge(PayloadTooLarge):
    """A call's result passes ``max_result_size``; it was not sent back."""


class ArgumentsTooLarge(PayloadTooLarge):
    """A call's arguments pass ``max_result_size``; the call was not sent."""


class RemoteError(StarburstError):
    """Stands in for an exception raised remotely that could not be sent back as itself.

    Attributes:
        type_name: qualified name of the original exception type.
        message: ``str()`` of the original exception.
        traceback_text: the formatted remote traceback.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str = "", reason: str = ""):
        text = f"{type_name}: {message}"
        if reason:
            text += f" ({reason})"
        super().__init__(text)
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text
        self.reason = reason

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.type_name, self.message, self.traceback_text, self.reason))


class StoreError(StarburstError):
    """The object store failed."""


class ObjectNotFound(StoreError, KeyError):
    """The object does not exist in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "object not found"


class StoreAccessDenied(StoreError, PermissionError):
    """The store refused access; the message names the permission and resource."""


class LaunchError(StarburstError):
    """Workers could not be started."""


class ImageError(StarburstError):
    """The worker image could not be built, pushed or checked; the message says what to do."""


class CostLimitExceeded(StarburstError):
    """The estimated cost of the work exceeds ``max_cost``."""


class SessionStopped(StarburstError):
    """A detached session stopped before this call ran: cancelled, or its ``max_cost`` or
    ``deadline`` reached (the message says which)."""


class WorkerLost(StarburstError, BrokenExecutor):
    """A worker stopped before finishing its batch, and no retry is left.

    Raised on the futures of that batch only.

    Attributes:
        worker_id: the worker that ran the last attempt.
        batch_id: the batch whose results were lost.
        attempts: how many times the batch was run.
        exit_code: the worker's exit code (negative: killed by that signal), if known.
        stop_code: the ECS stop code, if any.
        stopped_reason: the launcher's reason for the stop, if any.
        log_tail: the last lines of the worker's log.
    """

    def __init__(
        self,
        message: str,
        *,
        worker_id: str = "",
        batch_id: str = "",
        attempts: int = 0,
        exit_code: int | None = None,
        stop_code: str | None = None,
        stopped_reason: str | None = None,
        log_tail: str = "",
    ):
        super().__init__(message)
        self.worker_id = worker_id
        self.batch_id = batch_id
        self.attempts = attempts
        self.exit_code = exit_code
        self.stop_code = stop_code
        self.stopped_reason = stopped_reason
        self.log_tail = log_tail


class ExecutorBroken(StarburstError, BrokenExecutor):
    """The executor's manager failed (the store became unreachable, say); the message says why.
    Every unfinished future gets this error and new submits raise it."""


class InitializerFailed(ExecutorBroken):
    """The ``initializer`` raised in a worker; the message names its exception, whose remote
    traceback is the ``__cause__``.  As with ``ProcessPoolExecutor``, the executor is broken:
    every unfinished future gets this error and new submits raise it."""


class RemoteTraceback(Exception):
    """Attached as ``__cause__`` of a re-raised remote exception; its text is the remote traceback."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb
